#!/usr/bin/python3
"""test_onnx_int8.py: int8 ONNX export (`condenser export MODEL.cndq --onnx [--qlinear]`)
against our integer runtime, in onnxruntime (npm onnxruntime-node 1.16.3, test-time only).

Trains three small Fashion-MNIST models (conv2d with padding and a fused ReLU, max and average
pooling, a strided conv, flatten and dense; a W4A8 net with a stand-alone ReLU and global average
pooling; an MLP; a chain with tanh and hardswish, which the artifact holds as 256-entry
tables; a graph with depthwise and grouped convolutions, fused relu6, residual adds and a
concat; a dense residual add and concat of feature vectors), quantizes each with 64 self-test vectors, and exports both int8 forms. Checks:

- onnx.checker (full check) accepts both files;
- the exact form (--qlinear) gives the runtime's int8 logits on every self-test vector (0
  differing logits), and the runtime's accuracy (`condenser eval MODEL.cndq`) on the 10,000 test
  images to the last image;
- the QDQ form (which onnxruntime runs through its own integer kernels, requantizing with float
  multipliers and rounding half to even, so each layer may land one step off ours and the steps
  add up through the layers) keeps the runtime's accuracy on the 10,000 test images within one
  point; its distance to the runtime's self-test logits, in quantization steps, is printed;
- the exact form's requantization of the last layer, cut out of the graph
  (onnx.utils.extract_model), against a transcription of cnd_rt_requant on 60,000 accumulators
  per channel (small ones, where every rounding tie of the shift lies, and the int32 extremes);
- refusals: --qlinear of a float .cnd, a truncated artifact.

Exits 77 (ctest: skipped) when onnxruntime-node is not installed (scripts/test installs it).

usage: test_onnx_int8.py CONDENSER
"""
import gzip
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np
import onnx

FMNIST = "/usr/share/datasets/fashion-mnist"
HERE = os.path.dirname(os.path.abspath(__file__))
ORT_MODULES = os.environ.get("CND_ORT_MODULES")  # build-test/npm/node_modules (scripts/test)
MODELS = [
    ("cnn", "conv2d(8,3,pad=1) relu maxpool(2) conv2d(16,3,stride=2) relu avgpool(2) flatten "
     "dense(32) relu dense(10)", []),
    ("w4gap", "conv2d(8,3,pad=1) maxpool(2) relu conv2d(16,3,pad=1) relu gap dense(10)",
     ["--wbits", "4"]),
    ("mlp", "flatten dense(64) relu dense(10)", []),
    ("lut", "conv2d(8,3,pad=1) tanh maxpool(2) flatten dense(32) hardswish dense(10)", []),
    ("graph", "conv2d(8,3,stride=2,pad=1) batchnorm relu6 mbconv(2,8,1) mbconv(2,16,2) a=relu "
     "@input conv2d(4,5,stride=4,pad=2) relu concat(@a) conv2d(12,1,groups=4) hardswish gap "
     "dense(10)", []),
    ("dres", "flatten x=dense(32) relu dense(32) add(@x) relu6 a=dense(16) @x concat(@a) dense(10)",
     []),
]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return r.returncode, r.stdout + r.stderr


def sections(path):
    b = open(path, "rb").read()
    body = struct.unpack_from("<I", b, 8)[0]
    off, sect = 64, {}
    while off < body:
        tag, n = struct.unpack_from("<4sI", b, off)
        sect[tag] = b[off + 16:off + 16 + n]
        off += 16 + (n + 15) // 16 * 16
    return sect


def requant_ref(acc, mult, shift, zp, act_min, act_max):
    """cnd_rt_requant (deploy/runtime/cnd_rt_requant.h), in Python integers."""
    x = acc
    if shift < 0:
        x = max(-2**31, min(2**31 - 1, acc * 2**-shift))
    ab = x * mult
    nudge = 2**30 if ab >= 0 else 1 - 2**30
    q = abs(ab + nudge) // 2**31
    x = q if ab + nudge >= 0 else -q  # C division truncates toward zero
    n = max(shift, 0)
    if n > 0:
        mask = (1 << n) - 1
        rem = x & mask
        thr = (mask >> 1) + (1 if x < 0 else 0)
        x = ((x - rem) >> n) + (1 if rem > thr else 0)
    x = min(255, max(-256, x)) + zp
    return min(act_max, max(act_min, x))


def check_requant(d, cndq, exact_onnx):
    """The last layer's requantization subgraph (a dense without ReLU, so negative roundings
    show) against requant_ref; returns the differing count."""
    import onnx.utils
    sect = sections(cndq)
    nl = struct.unpack_from("<I", sect[b"LAYR"], 0)[0]
    e = sect[b"LAYR"][16 + 64 * (nl - 1):16 + 64 * nl]
    assert e[0] == 1 and not e[1] & 1, "expected a dense layer without ReLU last"
    oc = struct.unpack_from("<H", e, 10)[0]
    act_min, act_max = struct.unpack_from("<bb", e, 20)
    zp = struct.unpack_from("<i", e, 28)[0]
    mo, so = struct.unpack_from("<II", e, 52)
    mult = struct.unpack_from("<%di" % oc, sect[b"DATA"], mo)
    shift = struct.unpack_from("<%db" % oc, sect[b"DATA"], so)
    sub = os.path.join(d, "requant.onnx")
    onnx.utils.extract_model(exact_onnx, sub, ["l%d_acc_bias" % nl], ["logits"])
    # accumulators whose results span [-300, 300] (every rounding tie of the shift, both
    # signs), then any int32 value and the extremes
    rng = np.random.default_rng(7)
    span = [int(300 * 2.0**(31 + shift[o]) / max(mult[o], 1)) + 1 for o in range(oc)]
    acc = np.stack([np.concatenate([rng.integers(-span[o], span[o] + 1, 40000),
                                    rng.integers(-2**31, 2**31, 9990),
                                    [-2**31, -2**31 + 1, -1, 0, 1, 2**31 - 1, 2**30, -2**30,
                                     3, -3]]) for o in range(oc)], axis=1).astype(np.int64)
    xin, out = os.path.join(d, "acc.i64"), os.path.join(d, "acc_out.bin")
    acc.tofile(xin)
    r = subprocess.run(["node", os.path.join(HERE, "ort_run_q.js"), sub, xin,
                        str(len(acc)), str(oc), out], capture_output=True, text=True,
                       env=dict(os.environ, NODE_PATH=ORT_MODULES))
    if r.returncode:
        raise RuntimeError(r.stdout + r.stderr)
    got = np.fromfile(out, dtype=np.int8).reshape(len(acc), oc)
    want = np.array([[requant_ref(int(a), mult[o], shift[o], zp, act_min, act_max)
                      for o, a in enumerate(row)] for row in acc], dtype=np.int8)
    diff = int((got != want).sum())
    print("last layer's requantization: %d of %d outputs differ from cnd_rt_requant's "
          "(shifts %d..%d, %d distinct outputs)"
          % (diff, want.size, min(shift), max(shift), len(np.unique(want))))
    return diff


def selftests(path):
    """(inputs HWC uint8, expected int8 logits, C, H, W) from the artifact's TEST section."""
    b = open(path, "rb").read()
    body = struct.unpack_from("<I", b, 8)[0]
    off, sect = 64, {}
    while off < body:
        tag, n = struct.unpack_from("<4sI", b, off)
        sect[tag] = b[off + 16:off + 16 + n]
        off += 16 + (n + 15) // 16 * 16
    c, h, w = struct.unpack_from("<HHH", sect[b"INPT"], 0)
    n, kind, ib, ob = struct.unpack_from("<IIII", sect[b"TEST"], 0)
    assert kind == 0 and ib == c * h * w, "expected raw uint8 self-tests"
    xs, ys, p = [], [], 16
    for _ in range(n):
        xs.append(np.frombuffer(sect[b"TEST"], np.uint8, ib, p))
        ys.append(np.frombuffer(sect[b"TEST"], np.int8, ob, p + ib))
        p += ib + ob
    return np.array(xs).reshape(n, h, w, c), np.array(ys), c, h, w


def ort(d, model, x_nchw):
    xin, out = os.path.join(d, "in.u8"), os.path.join(d, "out.bin")
    x_nchw.astype(np.uint8).tofile(xin)
    r = subprocess.run(["node", os.path.join(HERE, "ort_run_q.js"), model, xin] +
                       [str(v) for v in x_nchw.shape] + [out], capture_output=True, text=True,
                       env=dict(os.environ, NODE_PATH=ORT_MODULES))
    if r.returncode:
        raise RuntimeError(r.stdout + r.stderr)
    kind = r.stdout.strip().split("\n")[-1].split()[0]
    dt = {"int8": np.int8, "float32": np.float32}[kind]
    return np.fromfile(out, dtype=dt).reshape(len(x_nchw), -1)


def props(model):
    return {p.key: p.value for p in onnx.load(model).metadata_props}


def test_images():
    with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return x, y


def check_model(condenser, d, name, arch, qargs, images, labels):
    cnd, cndq = os.path.join(d, name + ".cnd"), os.path.join(d, name + ".cndq")
    # the graph learns little in one epoch at the default rate: 3 at 0.01 take it to about 0.6
    more = ["--epochs", "3", "--lr", "0.01"] if name == "graph" else ["--epochs", "1"]
    rc, log = run([condenser, "train", "--arch", arch, "--subset", "3000", "--threads", "1",
                   "--no-checkpoint", "--out", cnd] + more)
    assert rc == 0, log
    rc, log = run([condenser, "quantize", cnd, "--subset", "2000", "--selftests", "64",
                   "--no-report", "--threads", "1", "--out", cndq] + qargs)
    assert rc == 0, log
    xs, ys, c, h, w = selftests(cndq)
    x = xs.transpose(0, 3, 1, 2)
    failures = 0
    for form, extra in (("exact", ["--qlinear"]), ("qdq", [])):
        path = os.path.join(d, "%s_%s.onnx" % (name, form))
        rc, log = run([condenser, "export", cndq, "--onnx", "--out", path] + extra)
        assert rc == 0, log
        onnx.checker.check_model(onnx.load(path), full_check=True)
        got = ort(d, path, x)
        pred = ort(d, path, images).argmax(1)
        acc = float((pred == labels).mean())
        if form == "exact":
            diff = int((got != ys).sum())
            print("%s exact: %d of %d self-test logits differ from the runtime's" %
                  (name, diff, ys.size))
            failures += diff != 0
            rc, log = run([condenser, "eval", cndq])
            m = re.search(r"accuracy\s+([0-9.]+)", log)
            assert rc == 0 and m, log
            rt_acc = float(m.group(1))
            print("%s exact: accuracy %.4f in onnxruntime, %s through `condenser eval`" %
                  (name, acc, m.group(1)))
            failures += abs(acc - rt_acc) > 5e-5
        else:
            pr = props(path)
            s, z = float(pr["condenser.output_scale"]), int(pr["condenser.output_zero_point"])
            steps = got / s + z - ys
            worst = float(np.abs(steps).max())
            off = int((np.rint(got / s + z) != ys).sum())
            print("%s qdq: %d of %d self-test logits off the runtime's (by at most %.3f steps); "
                  "accuracy %.4f in onnxruntime, %.4f through the runtime" %
                  (name, off, ys.size, worst, acc, rt_acc))
            failures += abs(acc - rt_acc) > 0.01
    return failures


def main():
    condenser = sys.argv[1]
    if not ORT_MODULES or not os.path.isdir(os.path.join(ORT_MODULES, "onnxruntime-node")):
        print("onnxruntime-node is not installed (scripts/test installs it): skipped")
        return 77
    images, labels = test_images()
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        for name, arch, qargs in MODELS:
            failures += check_model(condenser, d, name, arch, qargs, images, labels)
        cnd, cndq = os.path.join(d, "cnn.cnd"), os.path.join(d, "cnn.cndq")
        rc, log = run([condenser, "export", cnd, "--onnx", "--qlinear", "--out",
                       os.path.join(d, "x.onnx")])
        print("--qlinear of a .cnd: exit %d: %s" % (rc, log.strip()))
        failures += rc == 0 or "not an integer artifact" not in log
        failures += check_requant(d, cndq, os.path.join(d, "cnn_exact.onnx")) != 0
        bad = os.path.join(d, "trunc.cndq")
        open(bad, "wb").write(open(cndq, "rb").read()[:-300])
        rc, log = run([condenser, "export", bad, "--onnx", "--out", os.path.join(d, "y.onnx")])
        print("truncated artifact: exit %d: %s" % (rc, log.strip()))
        failures += rc == 0 or os.path.exists(os.path.join(d, "y.onnx"))
    print("FAILED" if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
