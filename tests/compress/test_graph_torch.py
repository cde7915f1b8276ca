#!/usr/bin/python3
"""test_graph_torch.py: Condenser's graph models against PyTorch, the independent implementation.

For each of a few small graphs (a MobileNetV2-style student of mbconv blocks with relu6 and
hardswish, a ResNet-style one of resblocks with projection shortcuts, two branches from the
model input joined by concat then a depthwise and a grouped convolution, and a residual around
dense layers), graph_run builds the model from its spec with seeded weights, writes it as a
model file and runs one training step: forward in training mode, mean cross-entropy, backward.
This script reads the model file itself (the spec in its canonical graph form and every
tensor), builds the same graph from torch.nn.functional ops with those weights, and compares:
the training-mode logits, every parameter's gradient, and the inference logits after the step
(batchnorm running statistics updated by PyTorch's rule). The largest absolute difference must
stay within 1e-4 (gradients: 1e-4 times the largest gradient, at least 1e-4 absolute).

Then `condenser export --onnx` writes each model as ONNX, which onnx.checker must accept and
Condenser's own ONNX engine (onnx_run) must run to PyTorch's inference logits of the model as
saved (before the step), within 1e-4.

usage: test_graph_torch.py GRAPH_RUN CONDENSER ONNX_RUN
"""
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

TOL = 1e-4

CASES = [
    # (spec, (C, H, W), batch, threads)
    ("conv2d(8,3,stride=2,pad=1) batchnorm relu6 mbconv(1,8,1) mbconv(4,12,2) mbconv(4,12,1) "
     "conv2d(24,1) batchnorm hardswish gap dense(10)", (1, 16, 16), 6, 1),
    ("conv2d(8,3,stride=2,pad=1) batchnorm relu6 mbconv(3,8,1) mbconv(3,16,2) gap dense(10)",
     (1, 16, 16), 5, 2),
    ("conv2d(8,3,pad=1) batchnorm relu resblock(8) resblock(16,2) gap dense(5)", (3, 10, 10), 4, 2),
    ("conv2d(4,3,pad=1) a=relu @input conv2d(4,5,pad=2) hardswish concat(@a) "
     "dwconv(3,stride=2,pad=1) conv2d(8,3,pad=1,groups=2) maxpool(2) flatten dense(5)",
     (3, 12, 12), 3, 1),
    ("@input flatten x=dense(16) tanh dense(16) add(@x) relu6 dense(4)", (2, 3, 3), 4, 1),
]


class Reader:
    def __init__(self, data):
        self.d, self.i = data, 0

    def u32(self):
        v = struct.unpack_from("<I", self.d, self.i)[0]
        self.i += 4
        return v

    def f32(self, n):
        v = np.frombuffer(self.d, dtype="<f4", count=n, offset=self.i).copy()
        self.i += 4 * n
        return v

    def str(self):
        n = self.u32()
        s = self.d[self.i:self.i + n].decode()
        self.i += n
        return s


def read_model(path):
    """The spec, input shape, classes and tensors (name -> array) of a .cnd file."""
    r = Reader(open(path, "rb").read())
    assert r.d[:4] == b"CNDM", "not a model file"
    r.i = 4
    version = r.u32()
    r.u32()
    spec = r.str()
    c, h, w, k = r.u32(), r.u32(), r.u32(), r.u32()
    r.f32(2 * c)  # normalisation
    for _ in range(r.u32()):
        r.str()
        r.str()
    tensors = {}
    for _ in range(r.u32()):
        name = r.str()
        dims = [r.u32() for _ in range(r.u32())]
        tensors[name] = r.f32(int(np.prod(dims))).reshape(dims)
    return version, spec, (c, h, w), k, tensors


TOKEN = re.compile(r"^(?:([A-Za-z_][A-Za-z0-9_]*)=)?([a-z0-9]+)(?:\((.*)\))?$")


def parse(spec):
    """Canonical spec -> list of nodes {op, pos (positional args), kw, src}."""
    nodes, names, cur = [], {"input": -1}, -1
    for tok in spec.split():
        if tok.startswith("@"):
            cur = names[tok[1:]]
            continue
        m = TOKEN.match(tok)
        assert m, "cannot read token %r" % tok
        name, op, args = m.group(1), m.group(2), m.group(3)
        pos, kw, refs = [], {}, []
        for a in (args.split(",") if args else []):
            if a.startswith("@"):
                # n<i> (a name the canonical spec gives an unnamed node) is node i
                refs.append(names[a[1:]] if a[1:] in names else int(a[2:]))
            elif "=" in a:
                k, v = a.split("=")
                kw[k] = float(v)
            else:
                pos.append(float(a))
        i = len(nodes)
        src = [cur] + refs if len(refs) == 1 else refs if refs else [cur]
        nodes.append({"op": op, "pos": pos, "kw": kw, "src": src})
        if name:
            names[name] = i
        cur = i
    return nodes


def build_params(nodes, tensors):
    params, state = [], {}
    for i, n in enumerate(nodes):
        if n["op"] in ("conv2d", "dense"):
            n["w"] = torch.tensor(tensors["L%d.weight" % i], dtype=torch.float32, requires_grad=True)
            n["b"] = torch.tensor(tensors["L%d.bias" % i], dtype=torch.float32, requires_grad=True)
            params += [n["w"], n["b"]]
        elif n["op"] == "batchnorm":
            n["w"] = torch.tensor(tensors["L%d.gamma" % i], requires_grad=True)
            n["b"] = torch.tensor(tensors["L%d.beta" % i], requires_grad=True)
            n["rm"] = torch.tensor(tensors["L%d.running_mean" % i])
            n["rv"] = torch.tensor(tensors["L%d.running_var" % i])
            params += [n["w"], n["b"]]
    return params


def forward(nodes, x, train):
    outs = []
    for n in nodes:
        a = [x if s < 0 else outs[s] for s in n["src"]]
        t, op, p, kw = a[0], n["op"], n["pos"], n["kw"]
        if op == "conv2d":
            y = F.conv2d(t, n["w"], n["b"], stride=int(kw.get("stride", 1)),
                         padding=int(kw.get("pad", 0)), groups=int(kw.get("groups", 1)))
        elif op == "dense":
            y = F.linear(t.reshape(t.shape[0], -1), n["w"], n["b"])
        elif op == "batchnorm":
            y = F.batch_norm(t, n["rm"], n["rv"], n["w"], n["b"], training=train,
                             momentum=kw.get("momentum", 0.1), eps=kw.get("eps", 1e-5))
        elif op == "relu":
            y = F.relu(t)
        elif op == "relu6":
            y = F.relu6(t)
        elif op == "hardswish":
            y = F.hardswish(t)
        elif op == "tanh":
            y = torch.tanh(t)
        elif op in ("maxpool", "avgpool"):
            k = int(p[0])
            s = int(kw.get("stride", k))
            y = F.max_pool2d(t, k, s) if op == "maxpool" else F.avg_pool2d(t, k, s)
        elif op == "gap":
            y = t.mean(dim=(2, 3))
        elif op == "flatten":
            y = t.reshape(t.shape[0], -1)
        elif op == "add":
            y = a[0] + a[1]
        elif op == "concat":
            y = torch.cat([a[0], a[1]], dim=1)
        else:
            raise ValueError("no torch form for %s" % op)
        outs.append(y)
    return outs[-1]


def check(what, ours, theirs, tol):
    err = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    ok = err <= tol
    print("  %-28s max |diff| %.3g (tolerance %.3g) %s" % (what, err, tol, "ok" if ok else "FAIL"))
    return ok


def onnx_logits(condenser, onnx_run, d, x):
    """Exports d/model.cnd as ONNX, checks it, runs it on x with Condenser's ONNX engine."""
    import onnx
    path = os.path.join(d, "model.onnx")
    subprocess.run([condenser, "export", os.path.join(d, "model.cnd"), "--onnx", "--out", path],
                   check=True, stdout=subprocess.DEVNULL)
    onnx.checker.check_model(onnx.load(path))
    x.astype("<f4").tofile(os.path.join(d, "in.f32"))
    subprocess.run([onnx_run, path, os.path.join(d, "in.f32"), str(len(x)),
                    os.path.join(d, "out.f32")], check=True)
    return np.fromfile(os.path.join(d, "out.f32"), dtype="<f4").reshape(len(x), -1)


def run_case(tools, spec, shape, B, threads):
    graph_run, condenser, onnx_run = tools
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([graph_run, spec, str(shape[0]), str(shape[1]), str(shape[2]), str(B),
                        "7", str(threads), d], check=True)
        version, canon, shp, K, tensors = read_model(os.path.join(d, "model.cnd"))
        x = np.fromfile(os.path.join(d, "x.bin"), dtype="<f4").reshape((B,) + tuple(shp))
        y = np.fromfile(os.path.join(d, "y.bin"), dtype=np.uint8)
        logits = np.fromfile(os.path.join(d, "logits.bin"), dtype="<f4").reshape(B, K)
        grads = np.fromfile(os.path.join(d, "grads.bin"), dtype="<f4")
        ev = np.fromfile(os.path.join(d, "eval.bin"), dtype="<f4").reshape(B, K)
        ox = onnx_logits(condenser, onnx_run, d, x)
    print("%s\n  -> %s (model file version %d, %d threads)" % (spec, canon, version, threads))
    nodes = parse(canon)
    params = build_params(nodes, tensors)
    xt = torch.tensor(x)
    with torch.no_grad():  # the model as saved, before the step moves the running statistics
        ok = check("ONNX export, inference", ox, forward(nodes, xt, False).numpy(), TOL)
    out = forward(nodes, xt, True)
    loss = F.cross_entropy(out, torch.tensor(y, dtype=torch.long))
    loss.backward()
    tg = torch.cat([p.grad.reshape(-1) for p in params]).numpy()
    ok &= version == 2 or print("  model file version %d, expected 2" % version) or False
    ok &= tg.shape == grads.shape or print("  %d gradients, PyTorch has %d" % (grads.size, tg.size))
    ok &= check("training logits", logits, out.detach().numpy(), TOL)
    if tg.shape == grads.shape:
        ok &= check("gradients", grads, tg, max(TOL, TOL * float(np.max(np.abs(tg)))))
    with torch.no_grad():
        ok &= check("inference logits after step", ev, forward(nodes, xt, False).numpy(), TOL)
    return ok


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ok = True
    for spec, shape, B, threads in CASES:
        ok &= bool(run_case(sys.argv[1:4], spec, shape, B, threads))
    print("test_graph_torch: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
