#!/usr/bin/python3
"""bench_quant_torch.py: PyTorch reference timings for scripts/bench's quantization section.

Loads a Condenser float model (.cnd), rebuilds it in PyTorch with the same weights, and measures
batch-1 latency (median and 99th percentile over --iters calls, one thread, inference mode) of
the float model and of PyTorch's own int8 post-training quantization (eager mode, per-channel
weights, calibrated on real Fashion-MNIST images) on every quantized engine this build has
(Debian's python3-torch: qnnpack and onednn). Prints one JSON object per line. Benchmark only:
nothing in Condenser depends on PyTorch.
"""
import argparse, gzip, json, re, struct, sys, time

import numpy as np
import torch
import torch.nn as nn


def read_cnd(path):
    b = open(path, "rb").read()
    o = 0

    def u32():
        nonlocal o
        v = struct.unpack_from("<I", b, o)[0]
        o += 4
        return v

    def s():
        nonlocal o
        n = u32()
        v = b[o:o + n].decode()
        o += n
        return v

    assert b[:4] == b"CNDM", "not a .cnd model"
    o = 12
    spec = s()
    C, H, W, K = u32(), u32(), u32(), u32()
    mean = np.frombuffer(b, "<f4", C, o); o += 4 * C
    std = np.frombuffer(b, "<f4", C, o); o += 4 * C
    for _ in range(u32()):
        s(); s()
    tensors = {}
    for _ in range(u32()):
        name = s()
        nd = u32()
        dims = [u32() for _ in range(nd)]
        n = int(np.prod(dims))
        tensors[name] = np.frombuffer(b, "<f4", n, o).reshape(dims).copy()
        o += 4 * n
    return spec, (C, H, W), mean.copy(), std.copy(), tensors


def build(spec, shape, tensors):
    layers, c, h, w = [], *shape
    for i, tok in enumerate(spec.split()):
        m = re.match(r"(\w+)(?:\((.*)\))?$", tok)
        kind, args = m.group(1), (m.group(2) or "")
        pos = [a for a in args.split(",") if a and "=" not in a]
        kw = dict(a.split("=") for a in args.split(",") if "=" in a)
        if kind == "conv2d":
            oc, k = int(pos[0]), int(pos[1])
            st, pad = int(kw.get("stride", 1)), int(kw.get("pad", 0))
            L = nn.Conv2d(c, oc, k, st, pad)
            L.weight.data = torch.from_numpy(tensors[f"L{i}.weight"])
            L.bias.data = torch.from_numpy(tensors[f"L{i}.bias"])
            c, h, w = oc, (h + 2 * pad - k) // st + 1, (w + 2 * pad - k) // st + 1
        elif kind == "dense":
            o_ = int(pos[0])
            L = nn.Linear(c * h * w, o_)
            L.weight.data = torch.from_numpy(tensors[f"L{i}.weight"].reshape(o_, -1))
            L.bias.data = torch.from_numpy(tensors[f"L{i}.bias"])
            c, h, w = o_, 1, 1
        elif kind == "relu":
            L = nn.ReLU()
        elif kind == "maxpool":
            k = int(pos[0]); st = int(kw.get("stride", k))
            L = nn.MaxPool2d(k, st); h, w = (h - k) // st + 1, (w - k) // st + 1
        elif kind == "flatten":
            L = nn.Flatten(); c, h, w = c * h * w, 1, 1
        else:
            raise SystemExit(f"bench_quant_torch: layer {tok} not supported here")
        layers.append(L)
    return nn.Sequential(*layers)


def fmnist(n):
    d = "/usr/share/datasets/fashion-mnist"
    with gzip.open(f"{d}/train-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return x[:n].astype(np.float32)


def timeit(fn, x, iters):
    for _ in range(100):
        fn(x)
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn(x)
        t.append(time.perf_counter() - t0)
    t.sort()
    return 1e6 * t[len(t) // 2], 1e6 * t[int(0.99 * (len(t) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--iters", type=int, default=3000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    spec, shape, mean, std, tensors = read_cnd(a.model)
    net = build(spec, shape, tensors).eval()
    x = fmnist(200)
    x = (x - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        p50, p99 = timeit(net, xt[:1], a.iters)
    print(json.dumps({"model": a.model, "engine": "torch-float32", "p50_us": p50, "p99_us": p99}))
    for engine in torch.backends.quantized.supported_engines:
        if engine == "none":
            continue
        try:
            torch.backends.quantized.engine = engine
            q = nn.Sequential(torch.ao.quantization.QuantStub(), build(spec, shape, tensors),
                              torch.ao.quantization.DeQuantStub()).eval()
            q.qconfig = torch.ao.quantization.get_default_qconfig(engine)
            torch.ao.quantization.prepare(q, inplace=True)
            with torch.inference_mode():
                q(xt)
            torch.ao.quantization.convert(q, inplace=True)
            with torch.inference_mode():
                p50, p99 = timeit(q, xt[:1], a.iters)
            print(json.dumps({"model": a.model, "engine": f"torch-int8-{engine}",
                              "p50_us": p50, "p99_us": p99}))
        except Exception as e:  # an engine that cannot run this model is reported, not fatal
            print(json.dumps({"model": a.model, "engine": f"torch-int8-{engine}",
                              "error": str(e).splitlines()[0][:200]}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
