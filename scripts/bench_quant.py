#!/usr/bin/python3
"""bench_quant.py: the quantization section of scripts/bench.

Trains (once, cached in WORK) the two Fashion-MNIST reference networks, quantizes each with PTQ
(W8A8, 500 calibration samples, auto ranges), QAT (W8A8) and W4A8 (PTQ and QAT), measures
accuracy through the integer runtime, artifact size against the float .cnd, PTQ time, and
batch-1 latency / throughput of our float path, the integer runtime (each kernel set) and
PyTorch (float and its int8 engines) side by side in the same run, then rewrites the
"Quantization and the integer runtime" section of docs/benchmarks.md.

Usage: bench_quant.py --bin build/condenser --work DIR --doc docs/benchmarks.md
"""
import argparse, json, os, re, statistics, subprocess, sys, time

NETS = {
    "MLP": ("flatten dense(128) relu dense(10)", 2),
    "CNN": ("conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) flatten "
            "dense(128) relu dense(10)", 1),
}
BEGIN, END = "<!-- quant:begin -->", "<!-- quant:end -->"


def run(cmd, log=None):
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if log:
        with open(log, "w") as f:
            f.write(" ".join(cmd) + "\n" + p.stdout)
    if p.returncode:
        sys.exit(f"bench_quant: failed: {' '.join(cmd)}\n{p.stdout}")
    return p.stdout, time.time() - t0


def quantize(a, cnd, out, extra, log):
    if a.reuse and os.path.exists(out) and os.path.exists(log) and \
            os.path.getmtime(out) >= os.path.getmtime(cnd):
        txt = open(log).read()  # the log of the run that produced this very artifact
    else:
        txt, _ = run([a.bin, "quantize", cnd, "--out", out, "--report-samples", "1000"] + extra, log)
    total = re.search(r"; total ([0-9.]+)s", txt)
    m = re.search(r"test accuracy: float ([0-9.]+)\s+integer ([0-9.]+)", txt)
    size = re.search(r"wrote .*?: (\d+) bytes \(([0-9.]+)x the float model's (\d+) bytes\), "
                     r"arena (\d+) bytes", txt)
    ptq = re.search(r"PTQ time \(calibration \+ build[^)]*\): ([0-9.]+)s", txt)
    return {"float": float(m.group(1)), "int": float(m.group(2)), "bytes": int(size.group(1)),
            "ratio": float(size.group(2)), "float_bytes": int(size.group(3)),
            "arena": int(size.group(4)), "ptq_s": float(ptq.group(1)),
            "total_s": float(total.group(1)), "log": txt}


def bench(a, model, extra=()):
    txt, _ = run([a.bin, "bench", model, "--json", "--iters", str(a.iters)] + list(extra))
    return json.loads(txt.strip().splitlines()[-1])


def targets(res):
    """The issue's targets next to what this run measured."""
    def ok(c):
        return "met" if c else "**missed**"
    md = ["### Targets (issue 3) against this run", "", "| target | MLP | CNN |", "|---|---|---|"]
    rows = [("int8 PTQ within 0.3 points of float", lambda r: r["ptq8"]["int"] - r["ptq8"]["float"], lambda d: d >= -0.003),
            ("int8 QAT within 0.1 points (or above)", lambda r: r["qat8"]["int"] - r["qat8"]["float"], lambda d: d >= -0.001),
            ("W4A8 QAT within 1.0 point", lambda r: r["qat4"]["int"] - r["qat4"]["float"], lambda d: d >= -0.010)]
    for name, f, c in rows:
        md.append(f"| {name} | " + " | ".join(f"{100 * f(r):+.2f} ({ok(c(f(r)))})" for r in res.values()) + " |")
    md.append("| int8 artifact <= 0.27x float | " + " | ".join(f"{r['ptq8']['ratio']:.3f}x ({ok(r['ptq8']['ratio'] <= 0.27)})" for r in res.values()) + " |")
    md.append("| W4A8 artifact <= 0.15x float | " + " | ".join(f"{r['qat4']['ratio']:.3f}x ({ok(r['qat4']['ratio'] <= 0.15)})" for r in res.values()) + " |")
    def med(r, k):
        d = r["speed"].get(k)
        return statistics.median(d["p50"]) if d else None
    cells = {"half": [], "torchq": [], "torchf": []}
    for r in res.values():
        fl, i8 = med(r, "ours float32 (OpenBLAS, 1 thread)"), med(r, "ours int8, auto kernels")
        tq = [statistics.median(d["p50"]) for k, d in r["speed"].items() if k.startswith("PyTorch int8")]
        tf = med(r, "PyTorch float32")
        cells["half"].append(f"{i8 / fl:.2f} ({ok(i8 <= fl / 2)})")
        cells["torchq"].append(f"{min(tq) / i8:.1f}x ({ok(min(tq) >= 5 * i8)})" if tq else "no PyTorch")
        cells["torchf"].append(f"{tf / i8:.1f}x ({ok(tf > i8)})" if tf else "no PyTorch")
    md.append("| int8 batch-1 latency <= 0.5x our float path | " + " | ".join(cells["half"]) + " |")
    md.append("| >= 5x faster than PyTorch's fastest int8 engine | " + " | ".join(cells["torchq"]) + " |")
    md.append("| faster than PyTorch float at batch 1 | " + " | ".join(cells["torchf"]) + " |")
    cnn = res.get("CNN")
    if cnn:
        md.append(f"| PTQ of the CNN, 500 samples, < 10 s | | {cnn['ptq8']['ptq_s']:.2f} s calibration + build "
                  f"({ok(cnn['ptq8']['ptq_s'] < 10)}); whole command {cnn['ptq8']['total_s']:.1f} s |")
    md.append("")
    return md


def edge_section(a, res):
    """Arena on 32-bit ARM (reference kernels, via qemu-arm) and Cortex-M4 code size."""
    import shutil
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rt = os.path.join(src, "deploy", "runtime")
    rts = sorted(os.path.join(rt, f) for f in os.listdir(rt) if f.startswith("rt_") and f.endswith(".c"))
    md = ["### Edge builds", ""]
    cmds = []
    if shutil.which("arm-linux-gnueabihf-gcc") and shutil.which("qemu-arm"):
        drv = os.path.join(a.work, "drv-arm")
        run(["arm-linux-gnueabihf-gcc", "-std=c99", "-O2", "-static", "-I", rt] + rts +
            [os.path.join(rt, "tools", "rt_driver.c"), "-o", drv])
        md += ["| artifact | arena on x86-64 (fast paths) | arena on 32-bit ARM (reference kernels) |",
               "|---|---|---|"]
        measured = {"ptq8": "ours int8, auto kernels", "qat4": "ours W4A8, auto kernels"}
        for net in res:
            for v in ("ptq8", "qat4"):
                art = os.path.join(a.work, f"{net.lower()}-{v}.cndq")
                # the arena condenser bench reported in this run (quantize logs may be reused)
                x86 = (res[net].get("speed", {}).get(measured[v]) or {}).get("mem") or res[net][v]["arena"]
                p = subprocess.run(["qemu-arm", drv, art, "1"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
                m = re.search(r"arena (\d+)", p.stderr)
                ok = "selftest ok" in p.stdout
                md.append(f"| {net.lower()}-{v}.cndq | {x86:,} B | "
                          f"{int(m.group(1)):,} B{'' if ok else ' (self-test FAILED)'} |")
        md.append("")
        cmds.append("qemu-arm drv-arm ARTIFACT 1   (deploy/runtime/tools/rt_driver.c, arm-linux-gnueabihf-gcc -static)")
    if shutil.which("arm-none-eabi-gcc"):
        b = os.path.join(a.work, "m4")
        model_c = os.path.join(a.work, "mlp-ptq8.c")
        run([a.bin, "export", os.path.join(a.work, "mlp-ptq8.cndq"), "--c-array", "--out", model_c])
        run(["cmake", "-S", rt, "-B", b, f"-DCMAKE_TOOLCHAIN_FILE={rt}/cortex-m4.cmake",
             f"-DCND_RT_FIRMWARE_MODEL={model_c}"])
        run(["cmake", "--build", b])
        lib, _ = run(["arm-none-eabi-size", "-t", os.path.join(b, "libcnd_runtime.a")])
        fw, _ = run(["arm-none-eabi-size", os.path.join(b, "cnd_rt_firmware")])
        libtext = int(lib.strip().splitlines()[-1].split()[0])
        fwtext = int(fw.strip().splitlines()[1].split()[0])
        art = os.path.getsize(os.path.join(a.work, "mlp-ptq8.cndq"))
        md += [f"Cortex-M4 (gcc-arm-none-eabi, `-Os -mthumb`, soft-float ABI, no floating-point "
               f"helpers linked): runtime library {libtext:,} bytes of code and constants; the "
               f"sizing firmware (`tools/rt_firmware.c` with the int8 MLP compiled in) "
               f"{fwtext:,} bytes of flash, of which {art:,} are the artifact, so "
               f"{fwtext - art:,} bytes of code including newlib-nano's memcpy/memset.", ""]
        cmds.append("cmake -S deploy/runtime -B m4 -DCMAKE_TOOLCHAIN_FILE=deploy/runtime/cortex-m4.cmake "
                    "-DCND_RT_FIRMWARE_MODEL=mlp-ptq8.c && arm-none-eabi-size ...")
    if cmds:
        md += ["Commands:", "", "```"] + cmds + ["```", ""]
    return md


def steps_section(a):
    """Per-step time of the integer CNN (deploy/runtime/tools/rt_layers.c), if it was built."""
    tool = os.path.join(os.path.dirname(os.path.abspath(a.bin)), "deploy", "runtime", "cnd_rt_layers")
    art = os.path.join(a.work, "cnn-ptq8.cndq")
    if not os.path.exists(tool) or not os.path.exists(art):
        return []
    md = ["### Where the CNN's time goes (int8, per step of the execution plan)", "",
          "`cnd_rt_layers cnn-ptq8.cndq %d KERNELS` (one step = one layer, or a conv2d fused with "
          "the maxpool after it, marked `+pool`; minimum and median of %d calls on the first "
          "self-test input; minimums show what the code costs, medians what the shared machine "
          "allowed):" % (a.iters, a.iters), "", "```"]
    for k in ("auto", "avx2"):
        txt, _ = run([tool, art, str(a.iters), k])
        md += [line.replace(a.work + "/", "") for line in txt.strip().splitlines()]
    md += ["```", ""]
    return md


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--doc", required=True)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reuse", action="store_true",
                    help="keep artifacts (and their quantize logs) already in WORK; re-measure speed")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    res, cmds = {}, []
    for net, (arch, qat_epochs) in NETS.items():
        cnd = os.path.join(a.work, f"{net.lower()}.cnd")
        if not os.path.exists(cnd):
            c = [a.bin, "train", "--data", "fmnist", "--arch", arch, "--epochs", "5", "--out", cnd]
            print("==", " ".join(c), flush=True)
            run(c, cnd + ".train.log")
        cmds.append(f"condenser train --data fmnist --arch \"{arch}\" --epochs 5 --out {net.lower()}.cnd")
        r = res[net] = {}
        variants = [("ptq8", []), ("qat8", ["--qat-epochs", str(qat_epochs)]),
                    ("ptq4", ["--wbits", "4"]), ("qat4", ["--wbits", "4", "--qat-epochs", str(qat_epochs)])]
        for name, extra in variants:
            out = os.path.join(a.work, f"{net.lower()}-{name}.cndq")
            print(f"== quantize {net} {name}", flush=True)
            r[name] = quantize(a, cnd, out, extra, out + ".log")
            cmds.append(f"condenser quantize {net.lower()}.cnd {' '.join(extra)} --out {net.lower()}-{name}.cndq".replace("  ", " "))
        # speed: rounds alternate float / int / torch so that load changes hit all alike
        int8 = os.path.join(a.work, f"{net.lower()}-ptq8.cndq")
        w4 = os.path.join(a.work, f"{net.lower()}-qat4.cndq")
        sp = {}
        for rnd in range(a.rounds):
            print(f"== speed {net} round {rnd + 1}", flush=True)
            rows = [("ours float32 (OpenBLAS, 1 thread)", bench(a, cnd)),
                    ("ours int8, auto kernels", bench(a, int8)),
                    ("ours int8, avx2 kernels", bench(a, int8, ["--kernels", "avx2"])),
                    ("ours int8, reference kernels", bench(a, int8, ["--kernels", "ref"])),
                    ("ours W4A8, auto kernels", bench(a, w4))]
            txt, _ = run(["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "bench_quant_torch.py"),
                          cnd, "--iters", str(a.iters)])
            for line in txt.strip().splitlines():
                j = json.loads(line)
                if "error" not in j:
                    rows.append(("PyTorch " + j["engine"].replace("torch-", ""), j))
            for label, j in rows:
                d = sp.setdefault(label, {"p50": [], "p99": [], "tput": [], "mem": None, "engine": j.get("engine")})
                d["p50"].append(j["p50_us"])
                d["p99"].append(j["p99_us"])
                if "throughput" in j:
                    d["tput"].append(j["throughput"])
                    d["mem"] = j["mem_bytes"]
        r["speed"] = sp
    cmds.append("condenser bench MODEL(.cnd|.cndq) --json --iters %d   (%d rounds, medians)" % (a.iters, a.rounds))
    cmds.append("scripts/bench_quant_torch.py MODEL.cnd --iters %d" % a.iters)

    md = [BEGIN, "## Quantization and the integer runtime", "",
          f"Produced by `scripts/bench quant` on {time.strftime('%Y-%m-%d')} "
          f"({os.uname().machine}, {os.cpu_count()} cores shared with other work; "
          "CPU flags: " + ("AVX-512 VNNI" if "avx512_vnni" in open("/proc/cpuinfo").read() else "no VNNI") + ")" +
          (" reusing the artifacts and quantize logs of an earlier run in the same work directory" if a.reuse else "") + ".",
          "Commands (in the work directory):", "", "```"] + cmds + ["```", "",
          "### Accuracy and size (Fashion-MNIST test set, 10,000 images, integer runtime)", "",
          "| network | float | int8 PTQ | int8 QAT | W4A8 PTQ | W4A8 QAT | float .cnd | int8 .cndq | W4A8 .cndq | PTQ time (whole command) |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for net, r in res.items():
        f = r["ptq8"]["float"]
        def acc(k):
            return f"{r[k]['int']:.4f} ({100 * (r[k]['int'] - f):+.2f})"
        md.append(f"| {net} | {f:.4f} | {acc('ptq8')} | {acc('qat8')} | {acc('ptq4')} | {acc('qat4')} | "
                  f"{r['ptq8']['float_bytes']:,} B | {r['ptq8']['bytes']:,} B ({r['ptq8']['ratio']:.3f}x) | "
                  f"{r['qat4']['bytes']:,} B ({r['qat4']['ratio']:.3f}x) | {r['ptq8']['ptq_s']:.2f} s "
                  f"({r['ptq8']['total_s']:.1f} s) |")
    md += ["", "QAT: " + ", ".join(f"{n} {e} epoch(s)" for n, (_, e) in NETS.items()) +
           " of fake-quantized fine-tuning (Adam 2e-4, cosine) on the 60,000 training images. "
           "PTQ time is calibration (500 samples, `auto`) plus building the integer model and its "
           "self-tests; the whole command also loads and decompresses the 70,000 images, evaluates "
           "the float model and the artifact on the test set and prints the per-layer report.", ""]
    for net, r in res.items():
        md += [f"### Speed, {net} (batch-1 latency; medians of {a.rounds} rounds of {a.iters} calls)", "",
               "| engine | p50 us | p99 us | throughput (samples/s) | memory |", "|---|---|---|---|---|"]
        sp = r["speed"]
        for label, d in sp.items():
            tp = f"{statistics.median(d['tput']):,.0f}" if d["tput"] else "-"
            mem = f"{d['mem']:,} B" if d["mem"] else "-"
            md.append(f"| {label} | {statistics.median(d['p50']):.1f} | {statistics.median(d['p99']):.1f} | {tp} | {mem} |")
        fl = statistics.median(sp["ours float32 (OpenBLAS, 1 thread)"]["p50"])
        i8 = statistics.median(sp["ours int8, auto kernels"]["p50"])
        tq = [statistics.median(d["p50"]) for k, d in sp.items() if k.startswith("PyTorch int8")]
        tf = [statistics.median(d["p50"]) for k, d in sp.items() if k == "PyTorch float32"]
        line = f"Ratios: int8 / our float = {i8 / fl:.2f}"
        if tq:
            line += f"; fastest PyTorch int8 engine / our int8 = {min(tq) / i8:.1f}x"
        if tf:
            line += f"; PyTorch float32 / our int8 = {tf[0] / i8:.1f}x"
        md += ["", line + ".", ""]
    md += steps_section(a)
    md += targets(res)
    md += edge_section(a, res)
    md += ["Memory: the runtime's arena (activations, per-channel constants, scratch; dense weights "
           "stay in the artifact; x86 arenas also hold the conv weights repacked for VNNI, per-channel requantization constants for AVX-512 and the padded unsigned copy of a conv input) for `.cndq`; activations, scratch and weights at batch 1 for `.cnd`. "
           "Integer throughput is one core running samples one after another; float throughput is "
           "one batched OpenBLAS pass.", END]
    section = "\n".join(md) + "\n"
    doc = open(a.doc).read() if os.path.exists(a.doc) else "# Benchmarks\n\nEach section is written by `scripts/bench SECTION`.\n\n"
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + section.rstrip("\n") + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + section
    with open(a.doc, "w") as f:
        f.write(doc)
    print(section)


if __name__ == "__main__":
    main()
