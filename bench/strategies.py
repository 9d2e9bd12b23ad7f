#!/usr/bin/env python3
"""Strategies and local losses compared: `fedpi simulate` runs of several configurations over several
seeds, test accuracy after every round. Every finished run is appended to a JSON-lines file, and runs
already there are not repeated, so an interrupted sweep continues where it stopped.

  bench/strategies.py --config 'fedavg=--strategy fedavg' --config 'fedlc=--loss fedlc' \\
      [--seeds 1,2,3,4,5] [--rounds 10] [--split 0-3,4-6,7-9] [--model mnist-cnn] [--limit N] \\
      [--out bench/out/strategies.jsonl] [--report]

Summary per configuration (mean over seeds, with min..max): accuracy at rounds 5, 10 and 20 (those
run), the first round at or above 85% (— when never), and the largest drop from one round to the
next after round 5. A configuration runs without the options it does not name among --model-ema,
--lr-decay and --lr-floor (--model-ema 0 --lr-decay 1 --lr-floor 0, as every run recorded before
they were the defaults); name them to measure them."""
import argparse, json, os, shlex, statistics, subprocess, sys, time


def run(a, args, seed):
    cmd = [a.fedpi, "simulate", "--data", a.data, "--model", a.model, "--rounds", str(a.rounds), "--split", a.split,
           "--seed", str(seed)] + (["--limit", str(a.limit)] if a.limit else []) + shlex.split(args)
    # a configuration names the moving average and decay it uses; the runs from before they were defaults had none
    for option, off in (("--model-ema", "0"), ("--lr-decay", "1"), ("--lr-floor", "0")):
        if option not in args:
            cmd += [option, off]
    start = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    acc = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[0].isdigit() and cols[2].endswith("%"):
            acc[int(cols[0])] = float(cols[2][:-1])
    return [acc[r] for r in range(1, a.rounds + 1)], time.time() - start


def key(a, name, args, seed):
    return {"name": name, "args": args, "seed": seed, "rounds": a.rounds, "split": a.split, "model": a.model, "limit": a.limit}


def summary(curves, threshold):
    def stat(xs):
        return f"{statistics.mean(xs):6.2f} ({min(xs):.2f}..{max(xs):.2f})" if xs else "—"
    rounds = len(curves[0])
    cols = []
    for r in (5, 10, 20):
        if r <= rounds:
            cols.append(stat([c[r - 1] for c in curves]))
    hits = [next((i + 1 for i, x in enumerate(c) if x >= threshold), None) for c in curves]
    reached = [h for h in hits if h is not None]
    cols.append((f"{statistics.mean(reached):.1f} ({len(reached)}/{len(curves)})" if reached else f"— (0/{len(curves)})"))
    drops = [max([0.0] + [c[i - 1] - c[i] for i in range(5, rounds)]) for c in curves]  # a rise is no drop
    cols.append(f"{statistics.mean(drops):.2f} (max {max(drops):.2f})")
    return cols


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fedpi", default=".build/release/fedpi")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--model", default="mnist-cnn")
    ap.add_argument("--split", default="0-3,4-6,7-9")
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=85.0)
    ap.add_argument("--config", action="append", default=[], metavar="NAME=ARGS",
                    help="a configuration: a name and the simulate options it adds")
    ap.add_argument("--out", default="bench/out/strategies.jsonl")
    ap.add_argument("--report", action="store_true", help="only summarise what --out holds for these configurations")
    ap.add_argument("--curves", action="store_true", help="also print every run's accuracy per round as a table")
    a = ap.parse_args()
    if not a.config:
        ap.error("give at least one --config NAME=ARGS")
    configs = [c.split("=", 1) if "=" in c else (c, "") for c in a.config]
    seeds = [int(s) for s in a.seeds.split(",")]
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    done = {}
    if os.path.exists(a.out):
        for line in open(a.out):
            rec = json.loads(line)
            done[json.dumps({k: rec[k] for k in ("name", "args", "seed", "rounds", "split", "model", "limit")}, sort_keys=True)] = rec
    if not a.report:
        for seed in seeds:
            for name, args in configs:
                k = key(a, name, args, seed)
                if json.dumps(k, sort_keys=True) in done:
                    continue
                curve, seconds = run(a, args, seed)
                rec = dict(k, accuracy=curve, seconds=round(seconds, 1))
                done[json.dumps(k, sort_keys=True)] = rec
                with open(a.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(f"seed {seed} {name:>24}: " + " ".join(f"{x:5.2f}" for x in curve) + f"  ({seconds:.0f} s)", flush=True)
    print(f"\n{a.model}, split {a.split}, {a.rounds} rounds" + (f", {a.limit} samples" if a.limit else ""))
    heads = [f"round {r}" for r in (5, 10, 20) if r <= a.rounds]
    print("| configuration | seeds | " + " | ".join(heads) + f" | first round ≥ {a.threshold:g}% | largest drop after round 5 |")
    print("|---|---:|" + "---:|" * (len(heads) + 2))
    for name, args in configs:
        curves = [done[json.dumps(key(a, name, args, s), sort_keys=True)]["accuracy"] for s in seeds
                  if json.dumps(key(a, name, args, s), sort_keys=True) in done]
        if curves:
            print(f"| {name} | {len(curves)} | " + " | ".join(summary(curves, a.threshold)) + " |")
    if a.curves:
        print("\n| configuration | seed | " + " | ".join(str(r) for r in range(1, a.rounds + 1)) + " |")
        print("|---|---:|" + "---:|" * a.rounds)
        for name, args in configs:
            for s in seeds:
                rec = done.get(json.dumps(key(a, name, args, s), sort_keys=True))
                if rec:
                    print(f"| {name} | {s} | " + " | ".join(f"{x:.2f}" for x in rec["accuracy"]) + " |")


if __name__ == "__main__":
    sys.exit(main())
