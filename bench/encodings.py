#!/usr/bin/env python3
"""Update encodings compared: `fedpi simulate` (3 in-process workers, classes 0-3/4-6/7-9, one local
epoch, FedAvg) with f32, f16 and i8 deltas, the same seeds for each, test accuracy after every round.
Prints per-seed curves, the mean accuracy over rounds 1-R and at round R, and each encoding's
difference from f32 (mean and spread over seeds).
  bench/encodings.py [--fedpi .build/release/fedpi] [--model mnist-mlp] [--seeds 1,2,3] [--rounds 10] [--limit N]"""
import argparse, statistics, subprocess, sys


def run(a, encoding, seed):
    cmd = [a.fedpi, "simulate", "--data", a.data, "--model", a.model, "--rounds", str(a.rounds), "--encoding", encoding,
           "--strategy", "fedavg", "--seed", str(seed)] + (["--limit", str(a.limit)] if a.limit else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    acc = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[0].isdigit() and cols[2].endswith("%"):
            acc[int(cols[0])] = float(cols[2][:-1])
    return [acc[r] for r in range(1, a.rounds + 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fedpi", default=".build/release/fedpi")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--model", default="mnist-mlp")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    curves = {e: {} for e in ("f32", "f16", "i8")}
    for seed in seeds:
        for e in curves:
            curves[e][seed] = run(a, e, seed)
            print(f"seed {seed} {e:>3}: " + " ".join(f"{x:6.2f}" for x in curves[e][seed]), flush=True)
    print(f"\n{a.model}, {a.rounds} rounds, seeds {a.seeds}")
    print("encoding  mean acc r1-R  acc at R   diff vs f32 (mean over rounds)  diff at R (mean, min..max over seeds)")
    for e in curves:
        means = [statistics.mean(curves[e][s]) for s in seeds]
        finals = [curves[e][s][-1] for s in seeds]
        dm = [statistics.mean(curves[e][s]) - statistics.mean(curves["f32"][s]) for s in seeds]
        df = [curves[e][s][-1] - curves["f32"][s][-1] for s in seeds]
        print(f"{e:>8}  {statistics.mean(means):13.2f}  {statistics.mean(finals):8.2f}   {statistics.mean(dm):+29.2f}"
              f"   {statistics.mean(df):+6.2f} ({min(df):+.2f}..{max(df):+.2f})")


if __name__ == "__main__":
    sys.exit(main())
