#!/usr/bin/env python3
"""Summary of bench/federated.sh: per-round accuracy and elapsed time of FedPi (from its history.sqlite)
and Flower (from the server's JSON lines), time to the target accuracy, FedPi's non-training share of
round time, bytes per round and peak memory."""
import argparse, glob, json, os, re, sqlite3


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
        elapsed = 0.0
        for rid, rnd, secs, acc, down, up in c.execute(
                "SELECT id, round, seconds, accuracy, bytes_down, bytes_up FROM rounds WHERE completed = 1 ORDER BY id"):
            elapsed += secs
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
        print(f"{i:>5} {f['accuracy'] * 100 if f else float('nan'):>9.2f}% {f['elapsed_s'] if f else float('nan'):>9.1f}"
              f" {w['accuracy'] * 100 if w else float('nan'):>10.2f}% {w['elapsed_s'] if w else float('nan'):>9.1f}")
    for target in [float(t) for t in a.target.split(",")]:
        tf, tw = first_at(fedpi, target), first_at(flower, target)
        line = f"time to {target:.0%}:"
        for name, t, rows in (("FedPi", tf, fedpi), ("Flower", tw, flower)):
            if rows:
                line += f"  {name} " + (f"{t['elapsed_s']:.1f} s (round {t['round']})" if t
                                        else f"not reached in {rows[-1]['round']} rounds (best {max(r['accuracy'] for r in rows):.2%})")
        if tf and tw:
            line += f"  ratio FedPi/Flower {tf['elapsed_s'] / tw['elapsed_s']:.2f}"
        print(line)
    trained = [r for r in fedpi if r["round"] > 0 and r["train_s"]]
    if trained:
        total = sum(r["seconds"] for r in trained)
        other = sum(r["seconds"] - r["train_s"] for r in trained)
        print(f"FedPi: {total / len(trained):.1f} s per round; share not spent training (round time minus the slowest"
              f" worker's training time): {other / total:.2%}; {trained[0]['bytes']:,} bytes per round (down + up)")
        if len(flower) > 1:
            fl = [r for r in flower if r["round"] > 0]
            per = sum(r['seconds'] for r in fl) / len(fl)
            print(f"Flower: {per:.1f} s per round; FedPi/Flower time per round {total / len(trained) / per:.2f}")
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
