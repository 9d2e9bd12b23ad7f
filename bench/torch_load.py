#!/usr/bin/env python3
"""Proof that a FedPi mnist-cnn file is a PyTorch state_dict as is: load_state_dict(strict=True)
into examples/mnist's Net and evaluate on the test split. Usage: torch_load.py FILE DATA_DIR"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, __import__("os").path.dirname(__file__))
from torch_mnist_cnn import Net, find, read_idx  # noqa: E402
import numpy as np  # noqa: E402

path, data = sys.argv[1], sys.argv[2]
net = Net()
state = {k: v.float() for k, v in load_file(path).items()}  # f16 files load too
net.load_state_dict(state, strict=True)
net.eval()
x = read_idx(find(data, "t10k", "images", "idx3"))
y = torch.from_numpy(read_idx(find(data, "t10k", "labels", "idx1")).astype(np.int64))
x = ((torch.from_numpy(x.astype(np.float32) / 255.0) - 0.1307) / 0.3081).unsqueeze(1)
with torch.no_grad():
    correct = sum((net(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item() for i in range(0, len(y), 1000))
print(f"PyTorch load_state_dict(strict=True) of {path}: test accuracy {correct / len(y):.2%}")
