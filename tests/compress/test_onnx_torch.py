#!/usr/bin/python3
"""test_onnx_torch.py: Condenser's ONNX engine against PyTorch, the independent implementation.

Builds small seeded models in PyTorch 1.13 (LeNet with a view(x.size(0), -1) reshape, a
VGG-style net with padded ceil-mode pooling, a ResNet-style net with residual Adds and a strided
1x1 downsample, a MobileNetV2-style net with depthwise convolutions, ReLU6 (Clip), a squeeze-
and-excite block (HardSigmoid, broadcast Mul) and HardSwish, and an MLP with BatchNorm1d,
LeakyReLU, Tanh, Sigmoid and Softmax), every BatchNorm in eval mode with random running
statistics; exports each with torch.onnx.export (opset 13, the MLP also at 11 and 17, LeNet
also with a fixed batch of 1), and compares Condenser's logits with PyTorch's on 1,000
Fashion-MNIST test images: the largest absolute difference must stay within 1e-4.

Then through the CLI: `condenser import` refuses the MobileNet as a student naming the Mul of
its squeeze-and-excite block (test_onnx_student.py imports graph students), imports LeNet as a student whose `condenser eval` accuracy on the 10,000 test
images is PyTorch's (and so is `condenser eval lenet.onnx --preprocess ...`), and
`condenser distill --teacher lenet.onnx` trains a student on a subset, which
`condenser quantize --teacher lenet.onnx --qat-epochs 1` then fine-tunes into an artifact.
These models have random weights; test_onnx_torch_distill.py trains the ResNet and the
MobileNet briefly and distills students from their exports.

usage: test_onnx_torch.py CONDENSER ONNX_RUN
       test_onnx_torch.py --write-seeds DIR   (the fuzz target's PyTorch seeds, corpus/onnx)
"""
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FMNIST = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530
PREP = "scale=1/255 mean=%g std=%g" % (MEAN, STD)
TOL = 1e-4
HERE = os.path.dirname(os.path.abspath(__file__))
ONNX_RUN = None
ORT_MODULES = os.environ.get("CND_ORT_MODULES")  # build-test/npm/node_modules (scripts/test)


def load_images(n):
    with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    x = raw.reshape(-1, 1, 28, 28)[:n].astype(np.float32)
    return (x / 255.0 - MEAN) / STD


def randomize_bn(model, gen):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c2 = nn.Conv2d(6, 16, 5)
        self.f1 = nn.Linear(400, 120)
        self.f2 = nn.Linear(120, 84)
        self.f3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.f3(F.relu(self.f2(F.relu(self.f1(x)))))


class Vgg(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 16, (3, 3), padding=1)
        self.p1 = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.c3 = nn.Conv2d(16, 16, 3, padding=2, dilation=2)
        self.p2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = self.p1(F.relu(self.c2(x)))
        x = self.p2(F.relu(self.c3(x)))
        return self.fc(torch.flatten(x, 1))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (self.down(x) if self.down is not None else x))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 32, 1))
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvRes(nn.Module):
    def __init__(self, cin, cout, stride, expand, se):
        super().__init__()
        h = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.expand = nn.Sequential(nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h),
                                    nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(h, h, 3, stride=stride, padding=1, groups=h,
                                          bias=False), nn.BatchNorm2d(h), nn.ReLU6())
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(h, 8, 1), nn.ReLU(),
                                nn.Conv2d(8, h, 1), nn.Hardsigmoid()) if se else None
        self.project = nn.Sequential(nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.dw(self.expand(x))
        if self.se is not None:
            y = y * self.se(y)
        y = self.project(y)
        return x + y if self.use_res else y


class MobileNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU6())
        self.blocks = nn.Sequential(InvRes(16, 16, 1, 4, False), InvRes(16, 24, 2, 4, True),
                                    InvRes(24, 24, 1, 4, False))
        self.head = nn.Sequential(nn.Conv2d(24, 64, 1), nn.Hardswish())
        self.grouped = nn.Conv2d(64, 64, 3, padding=1, groups=4)  # 16 channels per group
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.grouped(self.head(self.blocks(self.stem(x))))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(self.drop(x))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.f1 = nn.Linear(784, 64)
        self.bn = nn.BatchNorm1d(64)
        self.f2 = nn.Linear(64, 32)
        self.f3 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.leaky_relu(self.bn(self.f1(torch.flatten(x, 1))), 0.1)
        x = torch.sigmoid(self.f3(torch.tanh(self.f2(x))))
        return F.softmax(x * 4.0, dim=1)


def export(model, path, opset, dynamic=True):
    x = torch.zeros(1, 1, 28, 28)
    kw = {"dynamic_axes": {"x": {0: "n"}, "y": {0: "n"}}} if dynamic else {}
    torch.onnx.export(model, x, path, opset_version=opset, input_names=["x"],
                      output_names=["y"], **kw)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return r.returncode, r.stdout + r.stderr


def main():
    global ONNX_RUN
    condenser, onnx_run = sys.argv[1], sys.argv[2]
    ONNX_RUN = onnx_run
    torch.manual_seed(15)
    gen = torch.Generator().manual_seed(15)
    torch.set_num_threads(1)
    x = load_images(1000)
    failures = 0
    cases = [("lenet", LeNet(), 13, True), ("lenet_b1", LeNet(), 13, False),
             ("vgg", Vgg(), 13, True), ("resnet", ResNet(), 13, True),
             ("mobilenet", MobileNet(), 13, True), ("mlp11", Mlp(), 11, True),
             ("mlp13", Mlp(), 13, True), ("mlp17", Mlp(), 17, True)]
    with tempfile.TemporaryDirectory() as d:
        xin = os.path.join(d, "x.f32")
        x.tofile(xin)
        for name, model, opset, dyn in cases:
            randomize_bn(model, gen)
            model.eval()
            path = os.path.join(d, name + ".onnx")
            export(model, path, opset, dyn)
            with torch.no_grad():
                want = model(torch.from_numpy(x)).numpy()
            out = os.path.join(d, name + ".out")
            rc, log = run([onnx_run, path, xin, str(len(x)), out, "64", "2"])
            if rc:
                print("FAIL %s: %s" % (name, log))
                failures += 1
                continue
            got = np.fromfile(out, dtype=np.float32).reshape(want.shape)
            diff = float(np.abs(got - want).max())
            ok = diff <= TOL
            failures += not ok
            print("%s %s (opset %d): max |condenser - torch| = %.2e over %d logits (scale %.2f)"
                  % ("ok  " if ok else "FAIL", name, opset, diff, want.size,
                     float(np.abs(want).max())))
        failures += cli_checks(condenser, d)
    print("%d checks failed" % failures)
    return 1 if failures else 0


def cli_checks(condenser, d):
    """import (refusal and student), eval of the student, distill from an ONNX teacher."""
    bad = 0
    rc, log = run([condenser, "import", os.path.join(d, "mobilenet.onnx"),
                   "--out", os.path.join(d, "mobilenet.cnd")])
    ok = rc != 0 and re.search(r"node '[^']*' \(Mul, opset 13\)", log) and \
        not os.path.exists(os.path.join(d, "mobilenet.cnd"))
    print("%s import refuses the MobileNet's squeeze-and-excite Mul: %s" %
          ("ok  " if ok else "FAIL", log.strip().splitlines()[-1]))
    bad += not ok

    lenet = LeNet()
    torch.manual_seed(3)
    lenet = LeNet().eval()
    path = os.path.join(d, "lenet_t.onnx")
    export(lenet, path, 13)
    cnd = os.path.join(d, "lenet.cnd")
    rc, log = run([condenser, "import", path, "--out", cnd, "--preprocess", PREP])
    ok = rc == 0 and os.path.exists(cnd)
    print("%s import LeNet as a student: %s" % ("ok  " if ok else "FAIL", log.strip()))
    bad += not ok
    with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    with torch.no_grad():
        xt = torch.from_numpy((raw.astype(np.float32) / 255.0 - MEAN) / STD)
        acc = float((lenet(xt).argmax(1).numpy() == labels).mean())
    rc, log = run([condenser, "eval", cnd, "--data", "fmnist"])
    m = re.search(r"accuracy\s+([0-9.]+)", log)
    ok = rc == 0 and m and abs(float(m.group(1)) - acc) <= 2e-4
    print("%s eval of the imported student: %s, torch %.4f" %
          ("ok  " if ok else "FAIL", m.group(0) if m else log.strip(), acc))
    bad += not ok

    rc, log = run([condenser, "eval", path, "--preprocess", PREP, "--data", "fmnist", "--json"])
    m = re.search(r'"accuracy":([0-9.]+)', log)
    ok = rc == 0 and m and abs(float(m.group(1)) - acc) <= 2e-4
    print("%s eval of the ONNX model itself: %s, torch %.4f" %
          ("ok  " if ok else "FAIL", m.group(0) if m else log.strip(), acc))
    bad += not ok

    bad += export_checks(condenser, d, cnd, lenet, path)

    out = os.path.join(d, "student.cnd")
    rc, log = run([condenser, "distill", "--teacher", path, "--teacher-preprocess", PREP,
                   "--arch", "conv2d(4,3,pad=1) relu maxpool(2) flatten dense(10)",
                   "--data", "fmnist", "--subset", "600", "--epochs", "1", "--threads", "2",
                   "--no-checkpoint", "--out", out])
    ok = rc == 0 and os.path.exists(out) and "teacher " + path in log
    print("%s distill --teacher lenet.onnx: %s" % ("ok  " if ok else "FAIL",
                                                   log.strip().splitlines()[-1] if log else ""))
    if not ok:
        print(log)
    bad += not ok
    if ok:
        bad += export_student(condenser, d, out)
        q = os.path.join(d, "student.cndq")
        rc, log = run([condenser, "quantize", out, "--out", q, "--teacher", path,
                       "--teacher-preprocess", PREP, "--qat-epochs", "1", "--subset", "600",
                       "--threads", "2"])
        ok = rc == 0 and os.path.exists(q) and "teacher " + path in log
        print("%s quantize --qat-epochs 1 --teacher lenet.onnx: %s" %
              ("ok  " if ok else "FAIL", log.strip().splitlines()[-1] if log else ""))
        if not ok:
            print(log)
        bad += not ok
    return bad


def ort_logits(d, path, x):
    """onnxruntime's logits for x, or None when onnxruntime-node is not installed."""
    if not ORT_MODULES or not os.path.isdir(os.path.join(ORT_MODULES, "onnxruntime-node")):
        return None
    xin, out = os.path.join(d, "ort_in.f32"), os.path.join(d, "ort_out.f32")
    x.tofile(xin)
    rc, log = run(["node", os.path.join(HERE, "ort_run.js"), path, xin] +
                  [str(v) for v in x.shape] + [out], env=dict(os.environ, NODE_PATH=ORT_MODULES))
    if rc:
        raise RuntimeError(log)
    return np.fromfile(out, dtype=np.float32).reshape(len(x), -1)


def export_checks(condenser, d, cnd, lenet, src):
    """export of the imported LeNet: onnx.checker, our engine and onnxruntime against torch,
    and a re-import giving the same layers."""
    import onnx
    bad = 0
    path = os.path.join(d, "lenet_rt.onnx")
    rc, log = run([condenser, "export", cnd, "--onnx", "--out", path])
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        checked = "onnx.checker passes"
    except Exception as e:  # noqa: BLE001 (any checker complaint is a failure)
        checked = "onnx.checker: %s" % e
    x = load_images(256)
    with torch.no_grad():
        want = lenet(torch.from_numpy(x)).numpy()
    xin, out = os.path.join(d, "rt_in.f32"), os.path.join(d, "rt_out.f32")
    x.tofile(xin)
    rc2, log2 = run([ONNX_RUN, path, xin, str(len(x)), out])
    diff = float(np.abs(np.fromfile(out, dtype=np.float32).reshape(want.shape) - want).max()) \
        if rc2 == 0 else 1e9
    ok = rc == 0 and checked == "onnx.checker passes" and diff <= TOL
    print("%s export --onnx of the imported LeNet: %s, ours vs torch %.2e" %
          ("ok  " if ok else "FAIL", checked, diff))
    bad += not ok
    ort = ort_logits(d, path, x)
    if ort is None:
        print("note onnxruntime-node is not installed (scripts/test installs it): ORT checks not run")
    else:
        diff = float(np.abs(ort - want).max())
        ok = diff <= TOL
        print("%s onnxruntime on the exported LeNet: vs torch %.2e" % ("ok  " if ok else "FAIL",
                                                                      diff))
        bad += not ok
        for name in ("resnet", "mobilenet"):  # the torch exports, through onnxruntime and us
            p = os.path.join(d, name + ".onnx")
            got = np.fromfile(os.path.join(d, name + ".out"), dtype=np.float32)
            ref = ort_logits(d, p, load_images(1000)).reshape(-1)
            diff = float(np.abs(got - ref).max())
            ok = diff <= TOL
            print("%s onnxruntime on the torch export of %s: vs condenser %.2e" %
                  ("ok  " if ok else "FAIL", name, diff))
            bad += not ok
    rc, log = run([condenser, "import", path, "--json"])
    rc0, log0 = run([condenser, "import", src, "--json"])
    ok = rc == 0 and rc0 == 0 and \
        json.loads(log)["student_spec"] == json.loads(log0)["student_spec"]
    print("%s re-import of the export gives the same layers" % ("ok  " if ok else "FAIL"))
    return bad + (not ok)


def export_student(condenser, d, cnd):
    """A distilled student exported to ONNX evaluates as the .cnd does."""
    import onnx
    path = os.path.join(d, "student.onnx")
    rc, log = run([condenser, "export", cnd, "--onnx", "--out", path])
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    props = {p.key: p.value for p in m.metadata_props}
    prep = "mean=%s std=%s" % (props["condenser.norm_mean"], props["condenser.norm_std"])
    r1 = run([condenser, "eval", cnd, "--data", "fmnist", "--json"])
    r2 = run([condenser, "eval", path, "--data", "fmnist", "--json", "--preprocess", prep])
    e1, e2 = json.loads(r1[1]), json.loads(r2[1])
    ok = rc == 0 and r1[0] == 0 and r2[0] == 0 and e1["accuracy"] == e2["accuracy"] and \
        abs(e1["loss"] - e2["loss"]) <= 1e-5
    print("%s export --onnx of the distilled student: eval %.4f/%.6f as .onnx, %.4f/%.6f as .cnd"
          % ("ok  " if ok else "FAIL", e2["accuracy"], e2["loss"], e1["accuracy"], e1["loss"]))
    return not ok


def write_seeds(d):
    """Small exports for the fuzz corpus: every op of the models above in a few KiB."""
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    for name, model, opset in [("torch_lenet.onnx", LeNet(), 13), ("torch_mlp11.onnx", Mlp(), 11),
                               ("torch_mobilenet.onnx", MobileNet(), 13),
                               ("torch_resnet.onnx", ResNet(), 13), ("torch_vgg.onnx", Vgg(), 17)]:
        for p in model.parameters():  # shrink: the fuzzer mutates structure, not weights
            p.data.zero_()
        randomize_bn(model, gen)
        export(model.eval(), os.path.join(d, name), opset)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        write_seeds(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
