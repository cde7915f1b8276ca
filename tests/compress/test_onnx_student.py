#!/usr/bin/python3
"""test_onnx_student.py: ONNX graphs imported as trainable graph students, against PyTorch.

Two seeded PyTorch 1.13 models, every BatchNorm in eval mode with random running statistics,
exported by torch.onnx.export at opset 13:
- a ResNet-style CNN (test_onnx_torch.py's: residual Adds, a strided 1x1 downsample, global
  average pooling), exported as PyTorch does by default (BatchNorm folded into the convolutions);
- a MobileNetV2-style CNN: inverted residual blocks (1x1 expansion, depthwise 3x3 with stride,
  ReLU6 exported as Clip(0, 6), 1x1 projection, residual Add), a two-branch Concat on channels
  (a 1x1 conv and a 4-group 3x3 conv), HardSwish (HardSigmoid and Mul at opset 13), Dropout,
  exported with training=PRESERVE so its BatchNormalization nodes stay (batchnorm layers in
  the student, folded again by quantize).

Each is imported with `condenser import --preprocess` as a .cnd graph student; its logits on
1,000 raw Fashion-MNIST test images (the stored normalisation applied, as eval applies it) must
be PyTorch's within 1e-4. The student then fine-tunes (`distill --init` on labels only, the
first 1,000 training images, two epochs: accuracy on the first 1,000 test images up by at least
0.1 from PyTorch's), quantizes to a version-2 artifact (integer accuracy within 0.03 of the
float one on those test images), exports with `export --onnx` (our engine gives PyTorch's logits on it)
and re-imports as the same spec with the same logits (round trip). The MobileNet with a
squeeze-and-excite block (a Mul of two computed tensors) is refused naming that Mul, and no
file is written.

usage: test_onnx_student.py CONDENSER ONNX_RUN
"""
import gzip
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_onnx_torch import (FMNIST, MEAN, PREP, STD, TOL, InvRes, MobileNet,  # noqa: E402
                             ResNet, randomize_bn)


class MobileNetG(nn.Module):
    """MobileNetV2-style: depthwise convs, ReLU6, residual Adds, a Concat, HardSwish."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU6())
        self.blocks = nn.Sequential(InvRes(16, 16, 1, 4, False), InvRes(16, 24, 2, 4, False),
                                    InvRes(24, 24, 1, 4, False))
        self.a = nn.Conv2d(24, 16, 1)
        self.b = nn.Conv2d(24, 16, 3, padding=1, groups=4)
        self.head = nn.Sequential(nn.Conv2d(32, 48, 1), nn.Hardswish())
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = torch.cat([F.relu(self.a(x)), F.hardswish(self.b(x))], 1)
        x = F.adaptive_avg_pool2d(self.head(x), 1).flatten(1)
        return self.fc(self.drop(x))


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def load(split, n=None):
    pre = "t10k" if split == "test" else "train"
    with gzip.open(os.path.join(FMNIST, pre + "-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(FMNIST, pre + "-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return x[:n].astype(np.float32), y[:n]


def cnd_logits(onnx_run, d, model, raw):
    """The .cnd model's logits on raw samples (onnx_run's .cnd mode normalises them)."""
    xin, out = os.path.join(d, "raw.f32"), os.path.join(d, "cnd.out")
    raw.tofile(xin)
    rc, log = run([onnx_run, model, xin, str(len(raw)), out, "100", "2"])
    if rc:
        raise RuntimeError(log)
    return np.fromfile(out, dtype=np.float32).reshape(len(raw), -1)


def onnx_logits(onnx_run, d, model, x):
    xin, out = os.path.join(d, "pre.f32"), os.path.join(d, "onnx.out")
    x.tofile(xin)
    rc, log = run([onnx_run, model, xin, str(len(x)), out, "100", "2"])
    if rc:
        raise RuntimeError(log)
    return np.fromfile(out, dtype=np.float32).reshape(len(x), -1)


class Checks:
    def __init__(self):
        self.failed = 0

    def __call__(self, ok, what, log=""):
        print("%s %s" % ("ok  " if ok else "FAIL", what))
        if not ok:
            self.failed += 1
            if log:
                print(log)
        return ok


def write_idx(d, name, x, y):
    """x (n, 1, 28, 28) raw pixels and y labels as an IDX pair; returns the data spec."""
    img, lbl = os.path.join(d, name + "-images"), os.path.join(d, name + "-labels")
    with open(img, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(x), 28, 28) + x.astype(np.uint8).tobytes())
    with open(lbl, "wb") as f:
        f.write(struct.pack(">II", 0x801, len(y)) + y.astype(np.uint8).tobytes())
    return "idx:%s,%s" % (img, lbl)


def student(check, condenser, onnx_run, d, name, model, preserve, data):
    path, cnd = os.path.join(d, name + ".onnx"), os.path.join(d, name + ".cnd")
    mode = torch.onnx.TrainingMode.PRESERVE if preserve else torch.onnx.TrainingMode.EVAL
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), path, opset_version=13,
                      input_names=["x"], output_names=["y"], training=mode,
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    rc, log = run([condenser, "import", path, "--out", cnd, "--preprocess", PREP])
    if not check(rc == 0 and os.path.exists(cnd), "import %s as a student: %s" %
                 (name, log.strip().splitlines()[-2] if rc == 0 else ""), log):
        return
    raw, labels = load("test", 1000)
    xt = (raw / 255.0 - MEAN) / STD
    with torch.no_grad():
        want = model(torch.from_numpy(xt)).numpy()
    got = cnd_logits(onnx_run, d, cnd, raw)
    diff = float(np.abs(got - want).max())
    check(diff <= TOL, "%s student: max |condenser - torch| = %.2e over %d logits (scale %.2f)"
          % (name, diff, want.size, float(np.abs(want).max())))
    acc = float((want.argmax(1) == labels).mean())

    # fine-tuning on labels only (alpha 0): the random weights must learn something
    ft = os.path.join(d, name + "_ft.cnd")
    rc, log = run([condenser, "distill", "--init", cnd, "--teacher", path, "--teacher-preprocess",
                   PREP, "--alpha", "0", "--data", data["train"], "--test", data["test"],
                   "--batch", "16", "--lr", "0.003", "--epochs", "2", "--threads", "2",
                   "--no-checkpoint", "--out", ft])
    m = re.search(r"test accuracy ([0-9.]+)", log)
    acc_ft = float(m.group(1)) if rc == 0 and m else None
    check(acc_ft is not None and acc_ft >= acc + 0.1,
          "%s student fine-tunes (distill --init, 1,000 images, two epochs): test accuracy %.4f "
          "-> %s" % (name, acc, acc_ft), log)
    if acc_ft is not None:
        q = os.path.join(d, name + "_ft.cndq")
        rc, log = run([condenser, "quantize", ft, "--data", data["train"], "--test", data["test"],
                       "--calib", "100", "--method", "minmax", "--no-report", "--threads", "2",
                       "--out", q])
        m = re.search(r"test accuracy: float ([0-9.]+)\s+integer ([0-9.]+)", log)
        ver = struct.unpack("<H", open(q, "rb").read(6)[4:6])[0] if rc == 0 else None
        check(rc == 0 and m and ver == 2 and
              abs(float(m.group(1)) - float(m.group(2))) <= 0.03,
              "%s fine-tuned student quantizes: artifact version %s, %s" %
              (name, ver, m.group(0) if m else ""), log)

    # round trip: export --onnx, then import gives the same layers and logits
    rt, rtc = os.path.join(d, name + "_rt.onnx"), os.path.join(d, name + "_rt.cnd")
    rc, log = run([condenser, "export", cnd, "--onnx", "--out", rt])
    if not check(rc == 0, "%s student exports to ONNX" % name, log):
        return
    exp = onnx_logits(onnx_run, d, rt, xt)
    diff = float(np.abs(exp - want).max())
    check(diff <= TOL, "%s export: our engine on it vs torch %.2e" % (name, diff))
    rc, log = run([condenser, "import", rt, "--out", rtc, "--preprocess", PREP])
    if not check(rc == 0, "%s export re-imports" % name, log):
        return
    j0, j1 = (json.loads(run([condenser, "import", p, "--json"])[1]) for p in (path, rt))
    check(j0["student_spec"] == j1["student_spec"], "%s round trip: the same spec" % name,
          "%s\n%s" % (j0["student_spec"], j1["student_spec"]))
    back = cnd_logits(onnx_run, d, rtc, raw)
    diff = float(np.abs(back - got).max())
    check(diff <= 1e-6, "%s round trip: max logit difference %.2e" % (name, diff))


def main():
    condenser, onnx_run = sys.argv[1], sys.argv[2]
    torch.manual_seed(16)
    gen = torch.Generator().manual_seed(16)
    torch.set_num_threads(2)
    check = Checks()
    with tempfile.TemporaryDirectory() as d:
        data = {"train": write_idx(d, "train", *load("train", 1000)),
                "test": write_idx(d, "test", *load("test", 1000))}
        for name, model, preserve in [("resnet", ResNet(), False),
                                      ("mobilenet", MobileNetG(), True)]:
            randomize_bn(model, gen)
            student(check, condenser, onnx_run, d, name, model.eval(), preserve, data)
        se = MobileNet()
        randomize_bn(se, gen)
        path, out = os.path.join(d, "se.onnx"), os.path.join(d, "se.cnd")
        torch.onnx.export(se.eval(), torch.zeros(1, 1, 28, 28), path, opset_version=13,
                          input_names=["x"], output_names=["y"])
        rc, log = run([condenser, "import", path, "--out", out])
        check(rc != 0 and re.search(r"node '[^']*Mul[^']*' \(Mul, opset 13\): cannot be imported "
                                    r"as a trainable student: a product of two computed", log)
              and not os.path.exists(out),
              "import refuses the squeeze-and-excite Mul: %s" % log.strip().splitlines()[-1])
    print("%d checks failed" % check.failed)
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
