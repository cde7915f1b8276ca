#!/usr/bin/python3
"""test_onnx_torch_distill.py: distilling from TRAINED PyTorch teachers through their ONNX exports.

test_onnx_torch.py checks the engine on random-weight models, which say nothing about whether
distillation from them works. Here the ResNet-style (residual Adds, strided 1x1 downsample) and
MobileNetV2-style (depthwise convs, Clip, squeeze-and-excite, HardSwish, a grouped conv) models
of that script are trained in PyTorch 1.13 for one epoch on the first TRAIN_N Fashion-MNIST
training images (seed 15, Adam, two threads), so BatchNorm holds real running statistics, and
exported with torch.onnx.export (opset 13). For each teacher:

- Condenser's logits on 1,000 test images are within 1e-4 of PyTorch's, and the teacher's
  accuracy on them (PyTorch's argmax) is at least MIN_TEACHER;
- `condenser distill --teacher X.onnx --teacher-preprocess PREP --arch STUDENT --subset
  TRAIN_N --epochs 2` trains a small CNN student, and `condenser eval student.cnd --data fmnist
  --json` (10,000 test images) gives at least MIN_STUDENT and at least the teacher's accuracy
  minus MARGIN.

usage: test_onnx_torch_distill.py CONDENSER ONNX_RUN
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_onnx_torch import FMNIST, MEAN, PREP, STD, TOL, MobileNet, ResNet, export  # noqa: E402

TRAIN_N = 2000
STUDENT = "conv2d(8,3,pad=1) relu maxpool(2) conv2d(16,3,pad=1) relu maxpool(2) flatten dense(10)"
# Measured on 2026-12-05 (2 cores, other work on the machine; 67 s for the whole test): teachers
# ResNet 0.562 and MobileNet 0.648 on the 1,000 test images after one epoch on 2,000 images
# (below the 0.7-0.8 hoped for: more images or epochs cost more than this test's ~60 s budget);
# students 0.612 and 0.643 on the 10,000. Chance is 0.10. MIN_TEACHER fails a teacher that did
# not learn (a training or export bug); MARGIN allows the student's smaller capacity and fails a
# student that did not learn from the teacher's logits (measured: within 0.005 of its teacher or
# above it).
MIN_TEACHER = 0.50
MIN_STUDENT = 0.55
MARGIN = 0.10


def load(kind, n):
    with gzip.open(os.path.join(FMNIST, "%s-images-idx3-ubyte.gz" % kind)) as f:
        x = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    with gzip.open(os.path.join(FMNIST, "%s-labels-idx1-ubyte.gz" % kind)) as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:n]
    x = (x.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def train(model, x, y):
    """One epoch of Adam over x in a seeded order, batches of 32."""
    gen = torch.Generator().manual_seed(15)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for idx in torch.randperm(len(x), generator=gen).split(32):
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def check(condenser, onnx_run, d, name, model, xtr, ytr, xte, yte):
    t0 = time.time()
    train(model, xtr, ytr)
    t1 = time.time()
    path = os.path.join(d, name + ".onnx")
    export(model, path, 13)
    with torch.no_grad():
        want = model(xte).numpy()
    acc_t = float((want.argmax(1) == yte.numpy()).mean())
    xin, out = os.path.join(d, "x.f32"), os.path.join(d, name + ".out")
    xte.numpy().tofile(xin)
    rc, log = run([onnx_run, path, xin, str(len(xte)), out, "64", "2"])
    diff = float(np.abs(np.fromfile(out, dtype=np.float32).reshape(want.shape) - want).max()) \
        if rc == 0 else float("inf")
    ok = diff <= TOL and acc_t >= MIN_TEACHER
    print("%s %s trained in %.1f s on %d images: accuracy %.4f on %d test images; "
          "max |condenser - torch| = %.2e (scale %.2f)%s"
          % ("ok  " if ok else "FAIL", name, t1 - t0, len(xtr), acc_t, len(xte), diff,
             float(np.abs(want).max()), "" if rc == 0 else "\n" + log))
    bad = not ok

    s = os.path.join(d, name + "_student.cnd")
    t2 = time.time()
    rc, log = run([condenser, "distill", "--teacher", path, "--teacher-preprocess", PREP,
                   "--arch", STUDENT, "--data", "fmnist", "--subset", str(len(xtr)),
                   "--epochs", "2", "--threads", "2", "--no-checkpoint", "--out", s])
    t3 = time.time()
    if rc != 0 or "teacher " + path not in log:
        print("FAIL distill --teacher %s.onnx:\n%s" % (name, log))
        return bad + 1
    rc, log = run([condenser, "eval", s, "--data", "fmnist", "--json"])
    acc_s = json.loads(log)["accuracy"] if rc == 0 else 0.0
    ok = acc_s >= MIN_STUDENT and acc_s >= acc_t - MARGIN
    print("%s distill --teacher %s.onnx (%.1f s): student accuracy %.4f on the 10,000 test "
          "images, teacher %.4f (need >= %.2f and >= teacher - %.2f)%s"
          % ("ok  " if ok else "FAIL", name, t3 - t2, acc_s, acc_t, MIN_STUDENT, MARGIN,
             "" if rc == 0 else "\n" + log))
    return bad + (not ok)


def main():
    condenser, onnx_run = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    xtr, ytr = load("train", TRAIN_N)
    xte, yte = load("t10k", 1000)
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        for name, cls in (("resnet", ResNet), ("mobilenet", MobileNet)):
            torch.manual_seed(15)
            bad += check(condenser, onnx_run, d, name, cls(), xtr, ytr, xte, yte)
    print("%d checks failed" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
