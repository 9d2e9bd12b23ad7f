#!/usr/bin/env python3
"""Flower + PyTorch reference for bench/federated.sh: the same mnist-cnn, split (classes 0-3, 4-6, 7-9),
FedAvg weighted by examples (or Flower's own FedAvgM, FedAdam, FedYogi: --strategy, --server-lr, ...),
1 local epoch (or at most --local-steps steps) of SGD (lr 0.01, momentum 0.9, batch 64) per round with cross-entropy (or FedPi's
FedLC / FedRS losses from the client's class counts: --loss), central evaluation on the test set after
every round. Real processes over gRPC on loopback:
  flower_fedavg.py server --rounds R --out rounds.jsonl [--strategy fedadam --server-lr 0.01]
  flower_fedavg.py client --classes 0-3 [--loss fedlc --fedlc-tau 1]   (one per worker)
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

    common = dict(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=3, min_available_clients=3, min_evaluate_clients=0,
                  evaluate_fn=central, initial_parameters=ndarrays_to_parameters(get_weights(model)))
    if a.strategy == "fedavg":
        strategy = fl.server.strategy.FedAvg(**common)
    elif a.strategy == "fedavgm":
        strategy = fl.server.strategy.FedAvgM(server_learning_rate=a.server_lr, server_momentum=a.server_momentum, **common)
    else:
        rule = fl.server.strategy.FedAdam if a.strategy == "fedadam" else fl.server.strategy.FedYogi
        strategy = rule(eta=a.server_lr, eta_l=a.lr, beta_1=a.beta1, beta_2=a.beta2, tau=a.tau, **common)
    fl.server.start_server(server_address=a.address, config=fl.server.ServerConfig(num_rounds=a.rounds), strategy=strategy)


def client(a):
    import flwr as fl

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x, y = load(a.data, "train", parse_classes(a.classes))
    model = Net()
    counts = torch.bincount(y, minlength=10).float()

    def loss_fn(logits, labels):
        # FedPi's skew-aware losses (Sources/FedPiEngine/SoftmaxCrossEntropy.swift), the same per-class change
        if a.loss == "fedlc":
            offset = torch.where(counts > 0, a.fedlc_tau * counts.clamp(min=1) ** -0.25, torch.zeros_like(counts))
            z = logits - offset
            z = torch.where((counts > 0) | F.one_hot(labels, 10).bool(), z, torch.full_like(z, float("-inf")))
            return F.cross_entropy(z, labels)
        if a.loss == "fedrs":
            scale = torch.where(counts > 0, torch.ones_like(counts), torch.full_like(counts, a.fedrs_alpha))
            return F.cross_entropy(logits * scale, labels)
        return F.cross_entropy(logits, labels)

    class Client(fl.client.NumPyClient):
        def fit(self, parameters, config):
            set_weights(model, parameters)
            opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
            model.train()
            perm = torch.randperm(x.shape[0])
            for step, i in enumerate(range(0, x.shape[0], 64)):
                if a.local_steps and step >= a.local_steps:
                    break
                idx = perm[i : i + 64]
                opt.zero_grad()
                loss_fn(model(x[idx]), y[idx]).backward()
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
    ap.add_argument("--strategy", choices=["fedavg", "fedavgm", "fedadam", "fedyogi"], default="fedavg")
    ap.add_argument("--server-lr", type=float, default=1.0)
    ap.add_argument("--server-momentum", type=float, default=0.9)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.99)
    ap.add_argument("--tau", type=float, default=1e-3)
    ap.add_argument("--loss", choices=["ce", "fedlc", "fedrs"], default="ce")
    ap.add_argument("--fedlc-tau", type=float, default=1.0)
    ap.add_argument("--fedrs-alpha", type=float, default=0.5)
    ap.add_argument("--local-steps", type=int, default=0, help="at most this many steps per round (0: one epoch)")
    a = ap.parse_args()
    server(a) if a.mode == "server" else client(a)


if __name__ == "__main__":
    main()
