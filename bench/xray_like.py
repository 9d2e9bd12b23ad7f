#!/usr/bin/env python3
"""Chest-X-ray-like class folders for benchmarks (no download): OUT/{train,test}/{NORMAL,PNEUMONIA}/,
a bright body with two dark lung fields and noise, PNEUMONIA with bright patches in the lungs; sizes
around --side (odd ones too), every third file a JPEG. Like Kaggle's set, 1:3 NORMAL:PNEUMONIA in
train. The same recipe as the tests' generator (Tests/FedPiTesting), in numpy and Pillow.

  bench/xray_like.py OUT [--train 1000,3000] [--test 200,200] [--side 128] [--seed 1]"""
import argparse, os

import numpy as np
from PIL import Image


def image(rng, label, side):
    w, h = side - 7 + rng.integers(15), side - 7 + rng.integers(15)
    u, v = np.meshgrid(np.arange(w) / w, np.arange(h) / h)
    value = 170 - 60 * np.abs(u - 0.5)
    for lung in (0.3, 0.7):
        d = ((u - lung) / 0.16) ** 2 + ((v - 0.5) / 0.3) ** 2
        value -= np.where(d < 1, 90 * (1 - d), 0)
    if label == 1:
        for _ in range(3):
            cu, cv, r = 0.2 + 0.6 * rng.random(), 0.3 + 0.4 * rng.random(), 0.06 + 0.06 * rng.random()
            d = ((u - cu) ** 2 + (v - cv) ** 2) / r ** 2
            value += np.where(d < 1, 70 * (1 - d), 0)
    value += 24 * (rng.random((h, w)) - 0.5)
    return Image.fromarray(np.clip(value, 0, 255).astype(np.uint8), mode="L")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", default="1000,3000")
    ap.add_argument("--test", default="200,200")
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    for split, counts in (("train", a.train), ("test", a.test)):
        for label, (name, n) in enumerate(zip(("NORMAL", "PNEUMONIA"), map(int, counts.split(",")))):
            folder = os.path.join(a.out, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                img = image(rng, label, a.side)
                if i % 3 == 2:
                    img.save(os.path.join(folder, f"img{i}.jpeg"), quality=90)
                else:
                    img.save(os.path.join(folder, f"img{i}.png"))


if __name__ == "__main__":
    main()
