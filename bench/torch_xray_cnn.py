#!/usr/bin/env python3
"""PyTorch reference for xray-cnn (bench/folders.sh): the same network and parameter names as FedPi's
`xray-cnn` / `xray-cnn-128`, trained on the same image class folders (decoded with Pillow to grayscale
and resized to the input: BOX (area) when shrinking, bilinear when enlarging, as FedPi does), SGD with
momentum, timed the same way as `fedpi train` (training loop only). Prints one JSON line."""
import argparse, json, os, resource, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image


class XrayCNN(nn.Module):
    def __init__(self, side=64):
        super().__init__()
        chans = [1, 16, 32, 64] + ([64] if side == 128 else [])
        self.convs = len(chans) - 1
        for i in range(1, len(chans)):
            setattr(self, f"conv{i}", nn.Conv2d(chans[i - 1], chans[i], 3))
        self.fc1 = nn.Linear(64 * 6 * 6, 128)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, 2)

    def forward(self, x):
        for i in range(1, self.convs + 1):
            x = F.relu(F.max_pool2d(getattr(self, f"conv{i}")(x), 2))
        x = self.dropout(F.relu(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


def load(folder, side):
    classes = sorted(d for s in ("train", "test") if os.path.isdir(os.path.join(folder, s))
                     for d in os.listdir(os.path.join(folder, s)))
    classes = sorted(set(classes))
    out = {}
    for split in ("train", "test"):
        xs, ys = [], []
        for label, name in enumerate(classes):
            d = os.path.join(folder, split, name)
            for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                if not f.lower().endswith((".png", ".jpg", ".jpeg")):
                    continue
                img = Image.open(os.path.join(d, f)).convert("L")
                shrink = img.width >= side and img.height >= side
                xs.append(np.asarray(img.resize((side, side), Image.BOX if shrink else Image.BILINEAR), dtype=np.uint8))
                ys.append(label)
        x = (torch.from_numpy(np.stack(xs).astype(np.float32) / 255.0) - 0.5) / 0.25
        out[split] = (x.unsqueeze(1), torch.tensor(ys))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    data = load(a.data, a.side)
    decode_s = time.perf_counter() - t0
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    model = XrayCNN(a.side)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    n = xtr.shape[0]
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, a.batch_size):
            idx = perm[i:i + a.batch_size]
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        out = model(xte)
        correct = (out.argmax(1) == yte).sum().item()
    print(json.dumps({
        "framework": f"pytorch {torch.__version__}", "model": f"xray-cnn{'' if a.side == 64 else '-128'}",
        "parameters": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
        "images_decoded_per_s": (xtr.shape[0] + xte.shape[0]) / decode_s,
        "train_samples": n * a.epochs, "train_samples_per_s": n * a.epochs / train_s,
        "test_accuracy": correct / xte.shape[0],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
