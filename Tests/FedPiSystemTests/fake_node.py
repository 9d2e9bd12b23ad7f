#!/usr/bin/env python3
"""A hostile or broken FedPi node for the system tests: it answers the worker API (mnist-mlp) with
chosen replies and counts the requests it gets.

  fake_node.py MODE PORT_FILE COUNTS_FILE

MODE:
  huge-eval    sane node info; evaluates with samples = 2^63-1; training fails (500)
  inflated-eval  registers 1000 test samples, evaluates "99%" on 10^8 (a plausible number, not its own)
  poison       a finite update of all 1e6 claiming 10^15 examples
  poison-norm  the same update claiming 100 examples (within what it registered)
  lost         every collect answers 404 (as a worker that lost its task)
  hasty        every collect answers 202 at once instead of holding the long poll
  huge-update  a collect answers 200 with an endless chunked body
"""
import json, re, struct, sys, threading, zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE, PORT_FILE, COUNTS_FILE = sys.argv[1:4]
LAYOUT = [("fc1.bias", [200]), ("fc1.weight", [200, 784]), ("fc2.bias", [200]), ("fc2.weight", [200, 200]),
          ("fc3.bias", [10]), ("fc3.weight", [10, 200])]
counts = {}
lock = threading.Lock()


def count(key):
    with lock:
        counts[key] = counts.get(key, 0) + 1
        with open(COUNTS_FILE + ".tmp", "w") as f:
            json.dump(counts, f)
        import os
        os.replace(COUNTS_FILE + ".tmp", COUNTS_FILE)


def update(round_, examples, value=1e6):
    tensors, offset, data = {}, 0, b""
    for name, shape in LAYOUT:
        n = 1
        for d in shape:
            n *= d
        blob = struct.pack("<f", value) * n
        tensors[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        data += blob
    tensors["__metadata__"] = {"format": "fedpi/1", "model": "mnist-mlp", "kind": "delta", "round": str(round_),
                               "examples": str(examples), "encoding": "f32", "checksum": "%08x" % zlib.crc32(data)}
    header = json.dumps(tensors).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


class Node(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def drain(self):
        n = int(self.headers.get("Content-Length") or 0)
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                break
            n -= len(chunk)

    def do_GET(self):
        count("GET " + re.sub(r"/\d+", "/R", self.path.split("?")[0]))
        if self.path.startswith("/v1/node"):
            return self.answer(200, {"node": "evil", "version": "0", "models": ["mnist-mlp"], "model": "mnist-mlp", "dataset": "/d",
                                     "samples": 1000, "test_samples": 1000, "classes": [0], "state": "idle",
                                     "progress": {"samples": 0, "total": 0, "seconds": 0}, "uptime_seconds": 1, "health": {}})
        m = re.match(r"/v1/rounds/(\d+)/update", self.path)
        if not m:
            return self.answer(200, {"state": "ok"})
        r = int(m.group(1))
        if MODE == "poison":
            return self.answer(200, update(r, 10**15), "application/octet-stream")
        if MODE == "poison-norm":
            return self.answer(200, update(r, 100), "application/octet-stream")
        if MODE == "lost":
            return self.answer(404, {"state": "unknown", "message": "unknown round"})
        if MODE == "hasty":
            return self.answer(202, {"state": "training", "message": "0/1000 samples"})
        if MODE == "huge-update":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * (1 << 20)
            try:
                for _ in range(600):
                    self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    count("MiB sent")
            except OSError:
                pass
            self.close_connection = True
            return
        return self.answer(500, {"state": "failed", "message": "training failed"})

    def do_PUT(self):
        count("PUT")
        self.drain()
        self.answer(202, {"state": "training", "message": "started"})

    def do_POST(self):
        count("POST " + self.path)
        self.drain()
        if MODE == "inflated-eval":
            return self.answer(200, {"accuracy": 0.99, "loss": 0.01, "samples": 10**8, "seconds": 1})
        self.answer(200, {"accuracy": 0.5, "loss": 1.0, "samples": 2**63 - 1, "seconds": 1})

    def do_DELETE(self):
        count("DELETE")
        self.answer(200, {"state": "cancelled"})


server = ThreadingHTTPServer(("127.0.0.1", 0), Node)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.replace(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
