#!/usr/bin/env python3
"""latency_models.py N SEED: N random Fashion-MNIST (1x28x28) model specs, one a line, for
fitting the latency cost model (bench/latency_fit.sh, compress/latency.h).

Families, in turn so that every quarter of the list (the held-out quarter too) has each:
chains of conv2d (kernels 1/3/5, strides 1/2, 1 to 64 channels, so 1x1 convs over one input
channel occur) with max/avg pools and tanh; plain MLPs; MobileNetV2-style students (a stem,
mbconv blocks: 1x1 expansion, depthwise 3x3, 1x1 projection, residual add) with relu6 or
hardswish; ResNet-style students (resblock: 3x3 convs, 1x1 shortcuts, add); and small graphs
with concat, grouped and depthwise convs, gap. Sizes stay within what the integer runtime
runs (layer count) and what bench measures in seconds.
"""
import random
import sys


def chain(rng):
    toks, hw, c = [], 28, 1
    for _ in range(rng.choice([1, 1, 2, 2, 3])):
        k = rng.choice([1, 3, 3, 5])
        s = rng.choice([1, 1, 2]) if hw >= 8 else 1
        pad = k // 2
        oc = rng.choice([1, 4, 8, 16, 24, 32, 48, 64])
        toks.append("conv2d(%d,%d%s,pad=%d)" % (oc, k, ",stride=2" if s == 2 else "", pad))
        toks.append(rng.choice(["relu", "relu", "relu", "tanh", "batchnorm relu"]))
        hw = (hw + 2 * pad - k) // s + 1
        c = oc
        pool = rng.choice(["", "maxpool(2)", "maxpool(2)", "avgpool(2)"]) if hw >= 4 else ""
        if pool:
            toks.append(pool)
            hw //= 2
    toks.append(rng.choice(["flatten", "flatten", "gap"]))
    for _ in range(rng.choice([0, 1, 1, 2])):
        toks.append("dense(%d) %s" % (rng.choice([16, 32, 64, 128, 256]),
                                      rng.choice(["relu", "relu", "tanh"])))
    toks.append("dense(10)")
    return " ".join(toks)


def mlp(rng):
    toks = ["flatten"]
    for _ in range(rng.choice([1, 1, 2, 3])):
        toks.append("dense(%d) relu" % rng.choice([16, 32, 64, 128, 256, 512]))
    toks.append("dense(10)")
    return " ".join(toks)


def mobilenet(rng):
    stem = rng.choice([8, 16, 24])
    act = rng.choice(["relu6", "relu6", "hardswish"])
    toks = ["conv2d(%d,3,stride=%d,pad=1) batchnorm %s" % (stem, rng.choice([1, 2, 2]), act)]
    c = stem
    for _ in range(rng.choice([1, 2, 3, 4])):
        e = rng.choice([1, 2, 4, 6])
        out = rng.choice([c, c, 8, 16, 24, 32])
        s = rng.choice([1, 1, 2])
        toks.append("mbconv(%d,%d,%d)" % (e, out, s))
        c = out
    if rng.random() < 0.4:
        toks.append("conv2d(%d,1) batchnorm %s" % (rng.choice([32, 64, 128]), act))
    toks.append("gap dense(10)")
    return " ".join(toks)


def resnet(rng):
    stem = rng.choice([4, 8, 16])
    toks = ["conv2d(%d,3,stride=%d,pad=1) batchnorm relu" % (stem, rng.choice([1, 2, 2]))]
    if rng.random() < 0.5:
        toks.append("maxpool(2)")
    c = stem
    for _ in range(rng.choice([1, 2, 3])):
        out = rng.choice([c, c, 8, 16, 32])
        toks.append("resblock(%d,%d)" % (out, rng.choice([1, 1, 2])))
        c = out
    toks.append(rng.choice(["gap", "gap", "maxpool(2) flatten"]) + " dense(10)")
    return " ".join(toks)


def graph(rng):
    a = rng.choice([4, 8, 16])
    b = rng.choice([4, 8, 16, 32])
    k = rng.choice([1, 3])
    toks = ["x=conv2d(%d,3,stride=2,pad=1) relu" % a]
    kind = rng.choice(["concat", "dw", "group", "add"])
    if kind == "concat":
        toks.append("conv2d(%d,%d,pad=%d) y=relu @x conv2d(%d,3,pad=1) concat(@y)" %
                    (b, k, k // 2, rng.choice([4, 8, 16])))
    elif kind == "dw":
        dk = rng.choice([3, 5])
        toks.append("dwconv(%d,pad=%d%s) %s conv2d(%d,1) relu" %
                    (dk, dk // 2, rng.choice(["", ",stride=2"]),
                     rng.choice(["relu", "relu6", "hardswish"]), b))
    elif kind == "group":
        g = rng.choice([2, 4])
        toks.append("conv2d(%d,3,pad=1,groups=%d) relu" % (a * rng.choice([1, 2]), g))
    else:
        toks.append("conv2d(%d,%d,pad=%d) add(@x) relu" % (a, k, k // 2))
    if rng.random() < 0.5:
        toks.append(rng.choice(["maxpool(2)", "avgpool(2)"]))
    toks.append(rng.choice(["gap", "flatten"]) + " dense(10)")
    return " ".join(toks)


def main():
    n, seed = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    families = [chain, mobilenet, chain, resnet, mlp, graph, mobilenet, chain]
    for i in range(n):
        print(families[i % len(families)](rng))


if __name__ == "__main__":
    main()
