#!/usr/bin/env python3
"""scripts/bench_fed_autoc.py: a federated AutoCompress search on Fashion-MNIST (docs/benchmarks.md,
"Federated AutoCompress"; docs/compression.md, "Federated search").

A public set (the first 5,000 training images) trains a small teacher (MLP 784-128-10, 2 epochs)
and makes the candidates: the teacher and its prunings to 50%, 25% and 10% of the units
(`condenser prune --ratio`, 1 distillation epoch each) as int8 artifacts (`condenser quantize`),
the 25% one also at W4, and the float teacher. Three sites hold 2,000 disjoint images each of the
test split (90% of them their validation split), evaluate every candidate of each round on
their slice (3 rounds: 6, then 3, then 2 candidates) and send masked counts. Printed: each
candidate's federated accuracy (secure sums) next to its accuracy evaluated centrally on the
6,000 images the sites hold together (`condenser eval`, for comparison only: that pooling is
exactly what the federation avoids), the pick, the job's wall time, the seconds of each
evaluation round, and the bytes of one site's masked counts per round.

Runs only condenser and the Python standard library. Prints markdown.
Usage: scripts/bench_fed_autoc.py [--bin build-rel/condenser] [--work DIR]
"""
import argparse
import gzip
import json
import os
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time

FMNIST = "/usr/share/datasets/fashion-mnist"
MLP = "flatten dense(128) relu dense(10)"


def run(args, log):
    with open(log, "ab") as f:
        r = subprocess.run(args, stdout=f, stderr=f)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(args)} (see {log})")


def write_idx(img_path, lab_path, imgs, labs, idx):
    with open(img_path, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(idx), 28, 28))
        for i in idx:
            f.write(imgs[i * 784:(i + 1) * 784])
    with open(lab_path, "wb") as f:
        f.write(struct.pack(">II", 0x801, len(idx)))
        f.write(bytes(labs[i] for i in idx))


def load(split):
    imgs = gzip.open(os.path.join(FMNIST, f"{split}-images-idx3-ubyte.gz")).read()[16:]
    labs = gzip.open(os.path.join(FMNIST, f"{split}-labels-idx1-ubyte.gz")).read()[8:]
    return imgs, labs


def candidates(binp, root, log):
    """The public set, the teacher and the candidate files (paths, in order)."""
    imgs, labs = load("train")
    write_idx(f"{root}/pub-img.idx", f"{root}/pub-lab.idx", imgs, labs, list(range(5000)))
    pub = f"idx:{root}/pub-img.idx,{root}/pub-lab.idx"
    teacher = f"{root}/teacher.cnd"
    run([binp, "train", "--data", pub, "--arch", MLP, "--epochs", "2", "--out", teacher], log)
    out = []
    for ratio in ("0", "0.75", "0.9", "0.5"):
        src = teacher
        if ratio != "0":
            src = f"{root}/pruned-{ratio}.cnd"
            run([binp, "prune", teacher, "--out", src, "--ratio", ratio, "--epochs", "1",
                 "--data", pub, "--test", pub], log)
        q = f"{root}/{'teacher' if ratio == '0' else 'pruned-' + ratio}-w8.cndq"
        run([binp, "quantize", src, "--out", q, "--data", pub, "--test", pub], log)
        out.append(q)
        if ratio == "0.75":
            q4 = f"{root}/pruned-{ratio}-w4.cndq"
            run([binp, "quantize", src, "--out", q4, "--data", pub, "--test", pub, "--wbits",
                 "4"], log)
            out.append(q4)
    out.append(teacher)
    return teacher, out


def federation(binp, root, log, teacher, cands):
    ca, coord = f"{root}/ca", f"{root}/coord"
    run([binp, "ca", "init", "--dir", ca, "--name", "bench"], log)
    run([binp, "coordinator", "init", "--dir", coord, "--ca", ca], log)
    imgs, labs = load("t10k")
    sites = []
    for s in range(3):
        name = f"site-{s}"
        d = f"{root}/{name}"
        run([binp, "keygen", "--out", d], log)
        run([binp, "ca", "issue", "--dir", ca, "--name", name, "--role", "site", "--pubkey",
             f"{d}/identity.pub", "--out", f"{d}/site.pem"], log)
        run([binp, "site", "enroll", name, "--cert", f"{d}/site.pem", "--dir", coord], log)
        write_idx(f"{d}/images.idx", f"{d}/labels.idx", imgs, labs,
                  list(range(2000 * s, 2000 * (s + 1))))
        sites.append((name, d))
    write_idx(f"{root}/pooled-img.idx", f"{root}/pooled-lab.idx", imgs, labs, list(range(6000)))
    run([binp, "job", "create", "--dir", coord, "--kind", "autocompress", "--candidates",
         ",".join(cands), "--teacher", teacher, "--rounds", "3", "--sites", "3"], log)
    return coord, sites


def search(binp, root, coord, sites):
    port_file = f"{root}/endpoint"
    clog = open(f"{root}/coordinator.log", "wb")
    t0 = time.time()
    cp = subprocess.Popen([binp, "coordinator", "run", "--dir", coord, "--endpoint",
                           "tcp://127.0.0.1:*", "--endpoint-file", port_file, "--until-done",
                           "--threads", "2"], stdout=clog, stderr=clog)
    for _ in range(200):
        if os.path.exists(port_file):
            break
        time.sleep(0.05)
    endpoint = open(port_file).read().strip()
    agents = []
    for name, d in sites:
        with open(f"{d}/agent.ini", "w") as f:
            f.write(f"[site]\nname = {name}\ndata = idx:images.idx,labels.idx\nvalidation = 0.9\n"
                    f"[identity]\nkey = identity.key\ncertificate = site.pem\n"
                    f"[coordinator]\nendpoint = {endpoint}\npublic_key = {coord}/identity.pub\n"
                    f"ca_cert = ../ca/ca.crt\nca_crl = ../ca/crl.pem\n[limits]\nthreads = 1\n")
        alog = open(f"{d}/agent.log", "wb")
        agents.append(subprocess.Popen([binp, "agent", "--config", f"{d}/agent.ini",
                                        "--until-done"], stdout=alog, stderr=alog))
    if cp.wait(timeout=1800) != 0:
        sys.exit(f"coordinator failed (see {root}/coordinator.log)")
    wall = time.time() - t0
    for a in agents:
        a.wait(timeout=60)
    return wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build-rel/condenser")
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    binp = os.path.abspath(a.bin)
    root = a.work or tempfile.mkdtemp(prefix="cnd-bench-fedautoc-")
    os.makedirs(root, exist_ok=True)
    log = f"{root}/setup.log"
    teacher, cands = candidates(binp, root, log)
    coord, sites = federation(binp, root, log, teacher, cands)
    wall = search(binp, root, coord, sites)
    res = json.loads(subprocess.run([binp, "job", "candidates", "1", "--dir", coord, "--json"],
                                    capture_output=True, text=True, check=True).stdout)
    show = json.loads(subprocess.run([binp, "job", "show", "1", "--dir", coord, "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    print(f"work directory {root}; job wall time {wall:.1f} s (coordinator start to end)\n")
    print("| candidate | bytes | rounds | federated accuracy (validated) | pooled 6,000 (central) |")
    print("|---|---|---|---|---|")
    for c in res["candidates"]:
        ev = json.loads(subprocess.run(
            [binp, "eval", cands[c["index"]], "--data",
             f"idx:{root}/pooled-img.idx,{root}/pooled-lab.idx", "--json"],
            capture_output=True, text=True, check=True).stdout)
        acc = "-" if c["accuracy"] is None else f"{c['accuracy']:.4f} ({c['validated']})"
        mark = " (pick)" if c["index"] == res["picked"] else ""
        print(f"| {c['name']}{mark} | {c['size']} | {len(c['rounds'])} | {acc} | "
              f"{ev['accuracy']:.4f} |")
    print()
    for r in show["rounds"]:
        print(f"round {r['round']} attempt {r['attempt']}: {r['outcome']}, "
              f"{r['seconds']['total']:.3f} s ({r['seconds']['secagg']:.3f} s SecAgg+)")
    db = sqlite3.connect(f"{sites[0][1]}/agent.db")
    rows = db.execute("SELECT round, sum(size) FROM agent_message WHERE dir='E' AND "
                      "type IN ('masked_input', 'chunk') GROUP BY round ORDER BY round").fetchall()
    db.close()
    print("site-0 masked counts on the wire per round (MaskedInput + chunks, bytes): " +
          ", ".join(f"round {r}: {b}" for r, b in rows))


if __name__ == "__main__":
    main()
