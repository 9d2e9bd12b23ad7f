#!/usr/bin/env python3
"""Summary of bench/federated.sh: per-round accuracy and elapsed time of FedPi (from its history.sqlite)
and Flower (from the server's JSON lines), time to the target accuracy, FedPi's non-training share of
round time, bytes per round and peak memory.

Elapsed time is wall clock for both: Flower's from the server's clock at each round's central
evaluation, FedPi's from the history rows' `finished_at` (written when the round's model exists; 1 s
resolution), counted from round 0 for both. FedPi evaluates each round beside the next one, so the
sum of its rounds' `seconds` would leave out any wait for an evaluation between rounds; the wall
clock does not."""
import argparse, glob, json, os, re, sqlite3
from datetime import datetime


def first_at(rows, target):
    for r in rows:
        if r["accuracy"] is not None and r["accuracy"] >= target:
            return r
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/out/federated")
    ap.add_argument("--target", default="0.75,0.80,0.85", help="accuracies to time, comma-separated")
    a = ap.parse_args()
    fedpi, flower = [], []
    db = os.path.join(a.out, "fedpi/aggregator/history.sqlite")
    if os.path.exists(db):
        c = sqlite3.connect(db)
        start = None
        for rid, rnd, secs, acc, down, up, at in c.execute(
                "SELECT id, round, seconds, accuracy, bytes_down, bytes_up, finished_at FROM rounds WHERE completed = 1 ORDER BY id"):
            t = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
            start = t if start is None else start
            elapsed = t - start
            train = c.execute("SELECT MAX(train_seconds) FROM participants WHERE round_id = ?", (rid,)).fetchone()[0]
            fedpi.append({"round": rnd, "accuracy": acc, "elapsed_s": elapsed, "seconds": secs, "train_s": train,
                          "bytes": down + up})
    path = os.path.join(a.out, "flower.jsonl")
    if os.path.exists(path):
        flower = [json.loads(l) for l in open(path) if l.strip()]
        prev = 0.0
        for r in flower:
            r["seconds"], prev = r["elapsed_s"] - prev, r["elapsed_s"]

    print(f"{'round':>5} {'FedPi acc':>10} {'FedPi s':>9} {'Flower acc':>11} {'Flower s':>9}")
    for i in range(max(len(fedpi), len(flower))):
        f = fedpi[i] if i < len(fedpi) else None
        w = flower[i] if i < len(flower) else None
        print(f"{i:>5} {f['accuracy'] * 100 if f and f['accuracy'] is not None else float('nan'):>9.2f}%"
              f" {f['elapsed_s'] if f else float('nan'):>9.1f}"
              f" {w['accuracy'] * 100 if w else float('nan'):>10.2f}% {w['elapsed_s'] if w else float('nan'):>9.1f}")
    for target in [float(t) for t in a.target.split(",")]:
        tf, tw = first_at(fedpi, target), first_at(flower, target)
        line = f"time to {target:.0%}:"
        for name, t, rows in (("FedPi", tf, fedpi), ("Flower", tw, flower)):
            if rows:
                line += f"  {name} " + (f"{t['elapsed_s']:.1f} s (round {t['round']})" if t
                                        else f"not reached in {rows[-1]['round']} rounds (best {max(r['accuracy'] or 0 for r in rows):.2%})")
        if tf and tw:
            line += f"  ratio FedPi/Flower {tf['elapsed_s'] / tw['elapsed_s']:.2f}"
        print(line)
    trained = [r for r in fedpi if r["round"] > 0 and r["train_s"]]
    if trained:
        wall = fedpi[-1]["elapsed_s"]  # round 0 to the last round, wall clock
        train = sum(r["train_s"] for r in trained)
        inside = sum(r["seconds"] for r in trained)
        print(f"FedPi: {wall / len(trained):.1f} s per round (wall clock; {inside / len(trained):.1f} s inside the rounds);"
              f" share not spent training (wall clock minus the slowest worker's training time): {(wall - train) / wall:.2%};"
              f" {trained[0]['bytes']:,} bytes per round (down + up)")
        if len(flower) > 1:
            fl = [r for r in flower if r["round"] > 0]
            per = sum(r['seconds'] for r in fl) / len(fl)
            print(f"Flower: {per:.1f} s per round; FedPi/Flower time per round {wall / len(trained) / per:.2f}")
    txt = os.path.join(a.out, "fedpi.txt")
    if os.path.exists(txt):
        for line in open(txt):
            if "peak memory" in line:
                print("FedPi " + line.strip())
    for p in sorted(glob.glob(os.path.join(a.out, "flower-client-*.peak"))):
        print(f"Flower client {p[-6]} peak memory: {float(open(p).read()):.1f} MiB")
    if flower:
        print(f"Flower server peak memory: {max(r['server_peak_mib'] for r in flower):.1f} MiB")


if __name__ == "__main__":
    main()
