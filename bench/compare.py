#!/usr/bin/env python3
"""Runs `fedpi train --json` and bench/torch_mnist_cnn.py alternately with the same settings and
prints both and the ratios. Alternating keeps machine noise from favouring one side."""
import argparse, json, os, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit("no JSON result in output:\n" + text[-2000:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fedpi", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    common = ["--epochs", "1", "--batch-size", "64", "--lr", "0.01", "--eval-batch-size", "1000"]
    runs = {"fedpi": [], "pytorch": []}
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    for seed in range(1, a.seeds + 1):
        f = [a.fedpi, "train", "--data", a.data, "--json", "--seed", str(seed), "--momentum", "0.9"] + common
        t = [sys.executable, os.path.join(HERE, "torch_mnist_cnn.py"), "--data", a.data, "--seed", str(seed),
             "--momentum", "0.9", "--threads", "2"] + common
        if seed == 1:
            f += ["--save", os.path.join(HERE, "out", "fedpi-mnist-cnn.safetensors")]
        if a.limit:
            f += ["--limit", str(a.limit)]
            t += ["--limit", str(a.limit)]
        for name, cmd in (("fedpi", f), ("pytorch", t)):
            print(f"seed {seed}: {name} ...", file=sys.stderr, flush=True)
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[name].append(last_json(out))

    def mean(name, key):
        return statistics.mean(r[key] for r in runs[name])

    rows = [("training samples/s", "train_samples_per_s", "{:.0f}"),
            ("inference samples/s (batch 1000)", "eval_samples_per_s", "{:.0f}"),
            ("test accuracy after 1 epoch", "test_accuracy", "{:.2%}"),
            ("peak RSS MiB", "peak_rss_mib", "{:.1f}")]
    print(f"mnist-cnn, Fashion-MNIST{' (first %d samples)' % a.limit if a.limit else ''}, 1 epoch, batch 64, "
          f"SGD lr 0.01 momentum 0.9, {a.seeds} seed(s); {runs['pytorch'][0]['framework']}, 2 threads")
    print(f"{'':34} {'FedPi':>10} {'PyTorch':>10} {'FedPi/PyTorch':>14}")
    for label, key, fmt in rows:
        fv, tv = mean("fedpi", key), mean("pytorch", key)
        ratio = f"{fv / tv:.2f}x" if key != "test_accuracy" else f"{(fv - tv) * 100:+.2f} pp"
        print(f"{label:34} {fmt.format(fv):>10} {fmt.format(tv):>10} {ratio:>14}")
    if a.seeds > 1:
        for name in runs:
            print(f"{name} accuracies: " + ", ".join(f"{r['test_accuracy']:.2%}" for r in runs[name]))
    # the seed-1 FedPi model, loaded by PyTorch as a state_dict
    saved = os.path.join(HERE, "out", "fedpi-mnist-cnn.safetensors")
    print(f"FedPi seed-1 test accuracy {runs['fedpi'][0]['test_accuracy']:.2%}; " + subprocess.run(
        [sys.executable, os.path.join(HERE, "torch_load.py"), saved, a.data], check=True, capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
