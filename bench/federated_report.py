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
    ap.add_argument("--flower", default="fedavg", help="the Flower runs to show (flower-NAME.jsonl), space-separated")
    a = ap.parse_args()
    fedpi = []
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
    flowers = {}
    for name in a.flower.split():
        path = os.path.join(a.out, f"flower-{name}.jsonl")
        if not os.path.exists(path) and name == "fedavg":
            path = os.path.join(a.out, "flower.jsonl")  # the name before there were several runs
        if os.path.exists(path):
            rows = [json.loads(l) for l in open(path) if l.strip()]
            prev = 0.0
            for r in rows:
                r["seconds"], prev = r["elapsed_s"] - prev, r["elapsed_s"]
            flowers[name] = rows

    print(f"{'round':>5} {'FedPi acc':>10} {'FedPi s':>9}" + "".join(f" {'Flower ' + n + ' acc':>18} {'s':>7}" for n in flowers))
    for i in range(max([len(fedpi)] + [len(r) for r in flowers.values()])):
        f = fedpi[i] if i < len(fedpi) else None
        line = (f"{i:>5} {f['accuracy'] * 100 if f and f['accuracy'] is not None else float('nan'):>9.2f}%"
                f" {f['elapsed_s'] if f else float('nan'):>9.1f}")
        for rows in flowers.values():
            w = rows[i] if i < len(rows) else None
            line += f" {w['accuracy'] * 100 if w else float('nan'):>17.2f}% {w['elapsed_s'] if w else float('nan'):>7.1f}"
        print(line)
    for target in [float(t) for t in a.target.split(",")]:
        tf = first_at(fedpi, target)
        line = f"time to {target:.0%}:"
        for name, rows in [("FedPi", fedpi)] + [("Flower " + n, r) for n, r in flowers.items()]:
            t = first_at(rows, target)
            if rows:
                line += f"  {name} " + (f"{t['elapsed_s']:.1f} s (round {t['round']})" if t
                                        else f"not reached in {rows[-1]['round']} rounds (best {max(r['accuracy'] or 0 for r in rows):.2%})")
            if name != "FedPi" and tf and t:
                line += f" [FedPi/this {tf['elapsed_s'] / t['elapsed_s']:.2f}]"
        print(line)
    trained = [r for r in fedpi if r["round"] > 0 and r["train_s"]]
    if trained:
        wall = fedpi[-1]["elapsed_s"]  # round 0 to the last round, wall clock
        train = sum(r["train_s"] for r in trained)
        inside = sum(r["seconds"] for r in trained)
        print(f"FedPi: {wall / len(trained):.1f} s per round (wall clock; {inside / len(trained):.1f} s inside the rounds);"
              f" share not spent training (wall clock minus the slowest worker's training time): {(wall - train) / wall:.2%};"
              f" {trained[0]['bytes']:,} bytes per round (down + up)")
        for name, rows in flowers.items():
            fl = [r for r in rows if r["round"] > 0]
            if fl:
                per = sum(r['seconds'] for r in fl) / len(fl)
                print(f"Flower {name}: {per:.1f} s per round; FedPi/Flower time per round {wall / len(trained) / per:.2f}")
    txt = os.path.join(a.out, "fedpi.txt")
    if os.path.exists(txt):
        for line in open(txt):
            if "peak memory" in line:
                print("FedPi " + line.strip())
    for name, rows in flowers.items():
        for p in sorted(glob.glob(os.path.join(a.out, f"flower-{name}-client-*.peak"))):
            print(f"Flower {name} client {p[-6]} peak memory: {float(open(p).read()):.1f} MiB")
        print(f"Flower {name} server peak memory: {max(r['server_peak_mib'] for r in rows):.1f} MiB")


if __name__ == "__main__":
    main()
