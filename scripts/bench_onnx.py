#!/usr/bin/python3
"""bench_onnx.py: teacher inference through Condenser's ONNX import against PyTorch, side by side.

The models of tests/compress/test_onnx_torch.py (LeNet, the ResNet-style and MobileNetV2-style
nets) and a wider ResNet (32-64-128 channels), seeded random weights, exported by
torch.onnx.export (opset 13). Both run the same 2,048 Fashion-MNIST test images in batches of
256 on the same thread count (torch.set_num_threads; Condenser's --threads); each figure is the
median of REPEAT whole passes after one warm-up pass. Prints a markdown table for
docs/benchmarks.md ("ONNX teachers").

usage: bench_onnx.py ONNX_RUN [THREADS...]      (REPEAT=N in the environment, default 7)
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "compress"))
import test_onnx_torch as t  # noqa: E402  (the models and the image loader)

N, BATCH = 2048, 256


class WideResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU())
        self.blocks = nn.Sequential(t.Block(32, 32, 1), t.Block(32, 64, 2), t.Block(64, 64, 1),
                                    t.Block(64, 128, 2))
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def torch_time(model, x, threads, repeat):
    torch.set_num_threads(threads)
    times = []
    with torch.inference_mode():
        for r in range(repeat + 1):
            t0 = time.perf_counter()
            for s in range(0, len(x), BATCH):
                model(x[s:s + BATCH])
            if r:
                times.append(time.perf_counter() - t0)
    return float(np.median(times))


def ours_time(onnx_run, path, xin, threads, repeat, d):
    out = os.path.join(d, "out.f32")
    r = subprocess.run([onnx_run, path, xin, str(N), out, str(BATCH), str(threads),
                        str(repeat + 1)], capture_output=True, text=True, check=True)
    return float(r.stdout.split()[1])  # median of repeat+1 passes (the first one warms up)


def main():
    onnx_run = sys.argv[1]
    threads = [int(a) for a in sys.argv[2:]] or [1, 2]
    repeat = int(os.environ.get("REPEAT", "7"))
    torch.manual_seed(15)
    gen = torch.Generator().manual_seed(15)
    x = t.load_images(N)
    print("| model | MMACs/sample | threads | condenser ms / 2048 | pytorch ms / 2048 | ratio |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        xin = os.path.join(d, "x.f32")
        x.tofile(xin)
        xt = torch.from_numpy(x)
        for name, model in [("lenet", t.LeNet()), ("resnet", t.ResNet()),
                            ("mobilenetv2", t.MobileNet()), ("resnet-wide", WideResNet())]:
            t.randomize_bn(model, gen)
            model.eval()
            path = os.path.join(d, name + ".onnx")
            t.export(model, path, 13)
            macs = count_macs(model)
            for th in threads:
                ours = ours_time(onnx_run, path, xin, th, repeat, d)
                ref = torch_time(model, xt, th, repeat)
                print("| %s | %.2f | %d | %.1f | %.1f | %.2fx |" %
                      (name, macs / 1e6, th, ours * 1e3, ref * 1e3, ref / ours))
    return 0


def count_macs(model):
    """Multiply-accumulates of one sample through Conv2d and Linear layers (hooks)."""
    total = [0]

    def conv(m, i, o):
        total[0] += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def lin(m, i, o):
        total[0] += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(lin) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    return total[0]


if __name__ == "__main__":
    sys.exit(main())
