#!/usr/bin/env python3
"""FedPi <-> Python safetensors interop, run by `make test` after the Swift suite.
Usage: interop.py FEDPI_BINARY WORKDIR. Prints one line per check and 'N passed, N failed'."""
import json, os, struct, subprocess, sys, zlib

import numpy as np
from safetensors.numpy import load_file, save_file

fedpi, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
passed, failed = 0, 0

# PyTorch's examples/mnist Net().state_dict(): names and shapes, in order
TORCH_CNN = [("conv1.weight", (32, 1, 3, 3)), ("conv1.bias", (32,)), ("conv2.weight", (64, 32, 3, 3)), ("conv2.bias", (64,)),
             ("fc1.weight", (128, 9216)), ("fc1.bias", (128,)), ("fc2.weight", (10, 128)), ("fc2.bias", (10,))]


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def run(*args):
    r = subprocess.run([fedpi, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"fedpi {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def header_and_payload(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


# 1. FedPi writes, Python reads: a briefly trained mnist-cnn (synthetic-free: Fashion-MNIST subset)
f32 = os.path.join(work, "fedpi-f32.safetensors")
run("train", "--model", "mnist-cnn", "--limit", "256", "--test-limit", "100", "--save", f32)
tensors = load_file(f32)
check("names and shapes equal PyTorch's state_dict", [(k, v.shape) for k, v in tensors.items()] == TORCH_CNN or
      sorted((k, v.shape) for k, v in tensors.items()) == sorted(TORCH_CNN), str([(k, v.shape) for k, v in tensors.items()]))
check("dtype float32 everywhere", all(v.dtype == np.float32 for v in tensors.values()))
check("values finite and trained (not all zero)", all(np.isfinite(v).all() for v in tensors.values()) and
      all(np.abs(v).sum() > 0 for v in tensors.values()))
header, payload = header_and_payload(f32)
meta = header["__metadata__"]
check("metadata names the model and encoding", meta.get("model") == "mnist-cnn" and meta.get("encoding") == "f32" and meta.get("format") == "fedpi/1")
check("checksum is CRC-32 of the data", meta.get("checksum") == f"{zlib.crc32(payload):08x}", meta.get("checksum"))

# 2. f16 conversion agrees bit for bit with numpy's float32 -> float16 (round to nearest even)
f16 = os.path.join(work, "fedpi-f16.safetensors")
run("model", "convert", "--to", "f16", f32, f16)
half = load_file(f16)
check("f16 file equals numpy's rounding", all(half[k].dtype == np.float16 and np.array_equal(half[k], tensors[k].astype(np.float16)) for k in tensors))
check("f16 file is at most half the f32 file plus header", os.path.getsize(f16) <= os.path.getsize(f32) / 2 + 1024)

# 3. i8: values within one scale step of the original; scale.<name> holds one scale per row of the
# first dimension (comma-separated), which numpy broadcasts over the other dimensions
i8 = os.path.join(work, "fedpi-i8.safetensors")
run("model", "convert", "--to", "i8", f32, i8)
q = load_file(i8)
qmeta = header_and_payload(i8)[0]["__metadata__"]
ok = True
for k, v in tensors.items():
    scales = np.array(qmeta["scale." + k].split(","), dtype=np.float32)
    ok &= len(scales) == (v.shape[0] if v.ndim >= 2 else 1)
    scale = scales.reshape((-1,) + (1,) * (v.ndim - 1)) if v.ndim >= 2 else scales[0]
    ok &= q[k].dtype == np.int8 and bool((np.abs(q[k].astype(np.float32) * scale - v) <= scale * 1.0001).all())
check("i8 values within one step of their row's scale", ok)

# 4. Python writes, FedPi reads: known values survive FedPi's decoder and re-encoder exactly
py = os.path.join(work, "python.safetensors")
rng = np.random.default_rng(0)
written = {k: rng.standard_normal(s).astype(np.float32) * 0.05 for k, s in TORCH_CNN}
save_file(written, py, metadata={"note": "written by python"})
inspect = run("model", "inspect", py)
check("fedpi inspects a Python-written file", "fc1.weight" in inspect and "[128, 9216]" in inspect)
back = os.path.join(work, "python-roundtrip.safetensors")
run("model", "convert", "--to", "f32", py, back)
again = load_file(back)
check("Python-written values round-trip through FedPi exactly", all(np.array_equal(again[k], written[k]) for k in written))
out = run("train", "--model", "mnist-cnn", "--init", py, "--limit", "64", "--test-limit", "50", "--lr", "0.000001")
check("fedpi train --init accepts a Python-written model", "initial weights from" in out)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
