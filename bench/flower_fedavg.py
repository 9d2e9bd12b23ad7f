#!/usr/bin/env python3
"""Flower + PyTorch reference for bench/federated.sh: the same mnist-cnn, split (classes 0-3, 4-6, 7-9),
FedAvg weighted by examples, 1 local epoch of SGD (lr 0.01, momentum 0.9, batch 64) per round, central
evaluation on the test set after every round. Real processes over gRPC on loopback:
  flower_fedavg.py server --rounds R --out rounds.jsonl     (prints a JSON line per round)
  flower_fedavg.py client --classes 0-3                      (one per worker)
Uses Flower's start_server/start_client (deprecated in favour of SuperLink/SuperNode, still shipped)."""
import argparse, json, os, sys, time, warnings

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from torch_mnist_cnn import Net, find, read_idx  # noqa: E402

warnings.filterwarnings("ignore")


def load(data, stem, classes=None):
    x = read_idx(find(data, stem, "images", "idx3"))
    y = read_idx(find(data, stem, "labels", "idx1"))
    if classes is not None:
        keep = np.isin(y, classes)
        x, y = x[keep], y[keep]
    x = (torch.from_numpy(x.astype(np.float32) / 255.0) - 0.1307) / 0.3081
    return x.unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def get_weights(model):
    return [v.cpu().numpy() for v in model.state_dict().values()]


def set_weights(model, weights):
    model.load_state_dict({k: torch.tensor(w) for k, w in zip(model.state_dict().keys(), weights)}, strict=True)


def evaluate(model, x, y):
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], 1000):
            out = model(x[i : i + 1000])
            loss += F.cross_entropy(out, y[i : i + 1000], reduction="sum").item()
            correct += (out.argmax(1) == y[i : i + 1000]).sum().item()
    return loss / x.shape[0], correct / x.shape[0]


def peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0


def parse_classes(text):
    a, b = text.split("-")
    return list(range(int(a), int(b) + 1))


def server(a):
    import flwr as fl
    from flwr.common import ndarrays_to_parameters

    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    xte, yte = load(a.data, "t10k")
    model = Net()
    start = [None]
    out = open(a.out, "w")

    def central(rnd, weights, _config):
        now = time.perf_counter()
        if start[0] is None:
            start[0] = now
        set_weights(model, weights)
        loss, acc = evaluate(model, xte, yte)
        row = {"round": rnd, "accuracy": acc, "loss": loss, "elapsed_s": now - start[0], "server_peak_mib": peak_mib()}
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(json.dumps(row), flush=True)
        return loss, {"accuracy": acc}

    strategy = fl.server.strategy.FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=3, min_available_clients=3, min_evaluate_clients=0,
        evaluate_fn=central, initial_parameters=ndarrays_to_parameters(get_weights(model)))
    fl.server.start_server(server_address=a.address, config=fl.server.ServerConfig(num_rounds=a.rounds), strategy=strategy)


def client(a):
    import flwr as fl

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x, y = load(a.data, "train", parse_classes(a.classes))
    model = Net()

    class Client(fl.client.NumPyClient):
        def fit(self, parameters, config):
            set_weights(model, parameters)
            opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
            model.train()
            perm = torch.randperm(x.shape[0])
            for i in range(0, x.shape[0], 64):
                idx = perm[i : i + 64]
                opt.zero_grad()
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            with open(a.peak_file, "w") as f:
                f.write(str(peak_mib()))
            return get_weights(model), x.shape[0], {}

    fl.client.start_client(server_address=a.address, client=Client().to_client())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["server", "client"])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--address", default="127.0.0.1:18080")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--classes", default="0-3")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="flower-rounds.jsonl")
    ap.add_argument("--peak-file", default="/dev/null")
    a = ap.parse_args()
    server(a) if a.mode == "server" else client(a)


if __name__ == "__main__":
    main()
