#!/usr/bin/python3
"""torch_graph_int8.py: PyTorch's batch-1 latency of the MobileNetV2-style graph student
(bench/torch_train.py --arch mbnet, the architecture of docs/benchmarks.md) in float32 and int8,
the reference for bench/graph_int8.sh. Benchmark only: nothing in Condenser depends on PyTorch.

The int8 model is PyTorch's own post-training quantization in FX graph mode (prepare_fx /
convert_fx with the engine's default qconfig mapping: conv + batchnorm + relu6 fused, per-channel
weights on onednn, residual adds quantized), calibrated on 200 Fashion-MNIST training images,
for every quantized engine this build has (Debian's python3-torch 1.13: qnnpack and onednn;
fbgemm is not built in). The float weights are trained for --train-steps Adam steps first so
the activation ranges are those of a trained net. One thread, inference mode; latency is the
median and 99th percentile of --iters calls after 100 warm-up calls, repeated --rounds times
(the median round is printed). One JSON object per line.

usage: torch_graph_int8.py [--iters N] [--rounds R] [--train-steps S] [--threads T]
"""
import argparse, json, os, sys, time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train import load, model  # noqa: E402  (the same architecture as the training bench)


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


def rounds(fn, x, iters, n):
    r = sorted((timeit(fn, x, iters) for _ in range(n)), key=lambda v: v[0])
    return r[len(r) // 2], [round(v[0], 1) for v in r]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    x, y = load("train")
    x = (x - x.mean()) / x.std()
    xt, yt = torch.from_numpy(x[:6400]), torch.from_numpy(y[:6400])
    net = model("mbnet")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for s in range(a.train_steps):  # a briefly trained net: realistic activation ranges
        i = (s * 64) % len(xt)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt[i:i + 64]), yt[i:i + 64]).backward()
        opt.step()
    net.eval()
    one = xt[:1]
    with torch.inference_mode():
        (p50, p99), all50 = rounds(net, one, a.iters, a.rounds)
    print(json.dumps({"engine": "torch-float32", "threads": a.threads, "p50_us": p50,
                      "p99_us": p99, "round_p50s": all50}), flush=True)
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    for engine in torch.backends.quantized.supported_engines:
        if engine == "none":
            continue
        try:
            torch.backends.quantized.engine = engine
            import copy
            prepared = prepare_fx(copy.deepcopy(net), get_default_qconfig_mapping(engine),
                                  example_inputs=(one,))
            with torch.inference_mode():
                for i in range(0, 200, 50):
                    prepared(xt[i:i + 50])
            q = convert_fx(prepared)
            with torch.inference_mode():
                agree = (q(xt[:500]).argmax(1) == net(xt[:500]).argmax(1)).float().mean().item()
                (p50, p99), all50 = rounds(q, one, a.iters, a.rounds)
            print(json.dumps({"engine": f"torch-int8-{engine}", "threads": a.threads,
                              "p50_us": p50, "p99_us": p99, "round_p50s": all50,
                              "top1_agreement_with_float": agree}), flush=True)
        except Exception as e:  # an engine that cannot run this model is reported, not fatal
            print(json.dumps({"engine": f"torch-int8-{engine}",
                              "error": str(e).splitlines()[0][:200]}), flush=True)


if __name__ == "__main__":
    main()
