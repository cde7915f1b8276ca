#!/usr/bin/python3
"""bench_onnx_int8.py: an artifact's batch-1 latency in our integer runtime (`condenser bench`)
beside its int8 ONNX exports (QDQ and exact, `condenser export --onnx [--qlinear]`) in
onnxruntime (npm onnxruntime-node, run by tests/compress/ort_run_q.js), one thread each.

Each figure is the median over ROUNDS rounds of the per-call median of ITERS calls. onnxruntime
is timed around `session.run` in Node.js, so its figure includes the JS-to-native call (what a
Node.js user pays); ours is the C call. The last column is that floor: a graph of one Identity
on the same input, timed the same way.

usage: bench_onnx_int8.py CONDENSER ORT_NODE_MODULES MODEL.cndq... [ITERS=3000 ROUNDS=3 env]
"""
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ORT_RUN = os.path.join(HERE, "..", "tests", "compress", "ort_run_q.js")


def shape(path):
    b = open(path, "rb").read()
    off = 64
    while True:
        tag, n = struct.unpack_from("<4sI", b, off)
        if tag == b"INPT":
            return struct.unpack_from("<HHH", b, off + 16)
        off += 16 + (n + 15) // 16 * 16


def identity(path, c, h, w):
    import onnx
    from onnx import TensorProto, helper
    io = [helper.make_tensor_value_info(n, TensorProto.UINT8, ["N", c, h, w]) for n in "xy"]
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", io[:1], io[1:])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, path)


def main():
    condenser, modules, models = sys.argv[1], sys.argv[2], sys.argv[3:]
    iters, rounds = int(os.environ.get("ITERS", 3000)), int(os.environ.get("ROUNDS", 3))
    env = dict(os.environ, NODE_PATH=modules, OPENBLAS_NUM_THREADS="1")
    print("| model | ours int8 (auto kernels) p50 us | onnxruntime QDQ p50 us | onnxruntime "
          "exact (--qlinear) p50 us | QDQ / ours | exact / ours | onnxruntime Identity p50 us |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for m in models:
            c, h, w = shape(m)
            x = os.path.join(d, "x.u8")
            with open(x, "wb") as f:
                f.write(bytes((i * 37) % 256 for i in range(c * h * w)))
            ours, qdq, exact, ident = [], [], [], []
            paths = {"identity": os.path.join(d, "identity.onnx")}
            identity(paths["identity"], c, h, w)
            for form, extra in (("qdq", []), ("exact", ["--qlinear"])):
                paths[form] = os.path.join(d, form + ".onnx")
                subprocess.run([condenser, "export", m, "--onnx", "--out", paths[form]] + extra,
                               check=True, capture_output=True)
            for _ in range(rounds):  # interleaved
                r = subprocess.run([condenser, "bench", m, "--iters", str(iters), "--json"],
                                   check=True, capture_output=True, text=True, env=env)
                ours.append(json.loads(r.stdout)["p50_us"])
                for form, acc in (("qdq", qdq), ("exact", exact), ("identity", ident)):
                    r = subprocess.run(["node", ORT_RUN, paths[form], x, "1", str(c), str(h),
                                        str(w), os.path.join(d, "y.bin"), "1", str(iters)],
                                       check=True, capture_output=True, text=True, env=env)
                    acc.append(1000 * float(r.stdout.strip().split("\n")[-1].split()[1]))
            o, q, e, i = (statistics.median(v) for v in (ours, qdq, exact, ident))
            print("| %s | %.1f | %.1f | %.1f | %.1fx | %.1fx | %.1f |" %
                  (os.path.basename(m), o, q, e, q / o, e / o, i))


if __name__ == "__main__":
    main()
