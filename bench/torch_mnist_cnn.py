#!/usr/bin/env python3
"""PyTorch reference for bench/train.sh: the same mnist-cnn, data, optimizer and batch sizes as
`fedpi train`, timed the same way (training loop only; evaluation separately at batch 1000).
Prints one JSON line. Reads MNIST-format IDX files, raw or gzip, without torchvision."""
import argparse, gzip, json, resource, struct, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, rank = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 8, f"{path}: not an unsigned-byte IDX file"
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def find(directory, stem, kind, idx):
    import os
    for name in (f"{stem}-{kind}-{idx}-ubyte", f"{stem}-{kind}.{idx}-ubyte"):
        for suffix in ("", ".gz"):
            p = os.path.join(directory, name + suffix)
            if os.path.exists(p):
                return p
    raise SystemExit(f"no {stem} {kind} in {directory}")


class Net(nn.Module):
    """examples/mnist Net: 1,199,882 parameters."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return self.fc2(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--eval-batch-size", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    def load(stem):
        x = read_idx(find(a.data, stem, "images", "idx3"))
        y = read_idx(find(a.data, stem, "labels", "idx1"))
        x = (torch.from_numpy(x.astype(np.float32) / 255.0) - 0.1307) / 0.3081
        return x.unsqueeze(1), torch.from_numpy(y.astype(np.int64))

    xtr, ytr = load("train")
    xte, yte = load("t10k")
    if a.limit:
        xtr, ytr = xtr[: a.limit], ytr[: a.limit]
    model = Net()
    if a.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)

    n = xtr.shape[0]
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, a.batch_size):
            idx = perm[i : i + a.batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
    train_s = time.perf_counter() - t0

    model.eval()
    correct, loss_sum = 0, 0.0
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, xte.shape[0], a.eval_batch_size):
            out = model(xte[i : i + a.eval_batch_size])
            loss_sum += F.cross_entropy(out, yte[i : i + a.eval_batch_size], reduction="sum").item()
            correct += (out.argmax(1) == yte[i : i + a.eval_batch_size]).sum().item()
    eval_s = time.perf_counter() - t0
    print(json.dumps({
        "framework": f"pytorch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "train_samples": n * a.epochs,
        "train_samples_per_s": n * a.epochs / train_s,
        "eval_samples_per_s": xte.shape[0] / eval_s,
        "test_accuracy": correct / xte.shape[0],
        "test_loss": loss_sum / xte.shape[0],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
