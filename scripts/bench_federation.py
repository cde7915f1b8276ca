#!/usr/bin/env python3
"""scripts/bench_federation.py: the federation section of scripts/bench (docs/benchmarks.md).

1. `condenser demo --json` (the main job: 3 sites, 12 rounds, full Fashion-MNIST): accuracy of the
   federated int8 student against the same student distilled centrally, the share of round time
   spent in the SecAgg+ phases, bytes each site sent against its data, wall time.
2. Scale: a coordinator with N real agent processes on loopback (N = 10 and 50; each site holds 200
   Fashion-MNIST images, the student is the 101,770-parameter MLP, 3 rounds): the
   coordinator's peak resident memory (wait4 ru_maxrss), seconds per phase, and the measured
   bytes per parameter of a masked update on the wire (the site's egress log).
3. Bytes per parameter from the ring-width rule for 3..256 sites of 8-bit values
   (crypto/fixedpoint.h), next to Flower's SecAgg+ (8 bytes per value, flower issue 7522).

Runs only condenser and the Python standard library. Prints markdown.
"""
import argparse
import gzip
import json
import os
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time

FMNIST = "/usr/share/datasets/fashion-mnist"
MLP = "flatten dense(128) relu dense(10)"


def run(args, log, env=None):
    with open(log, "ab") as f:
        r = subprocess.run(args, stdout=f, stderr=f, env=env)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(args)} (see {log})")


def write_idx(path_img, path_lab, imgs, labs, idx):
    with open(path_img, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(idx), 28, 28))
        for i in idx:
            f.write(imgs[i * 784:(i + 1) * 784])
    with open(path_lab, "wb") as f:
        f.write(struct.pack(">II", 0x801, len(idx)))
        f.write(bytes(labs[i] for i in idx))


def demo(binp, repeat):
    rows = []
    for r in range(repeat):
        with tempfile.TemporaryDirectory(prefix="cnd-bench-demo-") as d:
            out = subprocess.run([binp, "demo", "--workdir", d, "--json", "--quiet",
                                  "--seed", str(1 + r)], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit("condenser demo failed:\n" + out.stderr)
            rows.append(json.loads(out.stdout))
    return rows


def scale(binp, n_sites, rounds, work):
    root = os.path.join(work, f"fed-{n_sites}")
    subprocess.run(["rm", "-rf", root])
    os.makedirs(root)
    log = os.path.join(root, "setup.log")
    ca, coord = os.path.join(root, "ca"), os.path.join(root, "coord")
    run([binp, "ca", "init", "--dir", ca, "--name", "bench"], log)
    run([binp, "coordinator", "init", "--dir", coord, "--ca", ca], log)
    imgs = gzip.open(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")).read()[16:]
    labs = gzip.open(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz")).read()[8:]
    # a small public set: the teacher (1 epoch) and calibration
    pub = list(range(0, 2000))
    write_idx(os.path.join(root, "pub-img.idx"), os.path.join(root, "pub-lab.idx"), imgs, labs, pub)
    teacher = os.path.join(root, "teacher.cnd")
    run([binp, "train", "--data", f"idx:{root}/pub-img.idx,{root}/pub-lab.idx", "--arch",
         "flatten dense(32) relu dense(10)", "--epochs", "1", "--out", teacher], log)
    sites = []
    for s in range(n_sites):
        name = f"site-{s:03d}"
        d = os.path.join(root, name)
        run([binp, "keygen", "--out", d], log)
        run([binp, "ca", "issue", "--dir", ca, "--name", name, "--role", "site", "--pubkey",
             os.path.join(d, "identity.pub"), "--out", os.path.join(d, "site.pem")], log)
        run([binp, "site", "enroll", name, "--cert", os.path.join(d, "site.pem"), "--dir", coord],
            log)
        idx = list(range(2000 + 200 * s, 2000 + 200 * (s + 1)))
        write_idx(os.path.join(d, "images.idx"), os.path.join(d, "labels.idx"), imgs, labs, idx)
        sites.append((name, d))
    port_file = os.path.join(root, "endpoint")
    quorum = n_sites // 2 + 1
    run([binp, "job", "create", "--dir", coord, "--student-arch", MLP, "--teacher", teacher,
         "--rounds", str(rounds), "--sites", str(n_sites), "--quorum", str(quorum),
         "--join-wait-ms", "600000", "--sample-cap", "180", "--masked-ms", "120000"], log)
    clog = open(os.path.join(root, "coordinator.log"), "wb")
    # /usr/bin/time measures the coordinator's own peak RSS (a child forked from this Python
    # process would count Python's pages from before its exec).
    rss_file = os.path.join(root, "coordinator.maxrss")
    cp = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file,
                           binp, "coordinator", "run", "--dir", coord, "--endpoint",
                           "tcp://127.0.0.1:*", "--endpoint-file", port_file, "--until-done",
                           "--threads", "2"], stdout=clog, stderr=clog)
    for _ in range(200):
        if os.path.exists(port_file):
            break
        time.sleep(0.05)
    endpoint = open(port_file).read().strip()
    pub_key = os.path.join(coord, "identity.pub")
    agents = []
    for name, d in sites:
        with open(os.path.join(d, "agent.ini"), "w") as f:
            f.write(f"[site]\nname = {name}\ndata = idx:images.idx,labels.idx\nvalidation = 0.1\n"
                    f"[identity]\nkey = identity.key\ncertificate = site.pem\n"
                    f"[coordinator]\nendpoint = {endpoint}\npublic_key = {pub_key}\n"
                    f"ca_cert = ../ca/ca.crt\nca_crl = ../ca/crl.pem\n[limits]\nthreads = 1\n")
        alog = open(os.path.join(d, "agent.log"), "wb")
        agents.append(subprocess.Popen([binp, "agent", "--config", os.path.join(d, "agent.ini"),
                                        "--until-done"], stdout=alog, stderr=alog))
    t0 = time.time()
    _, status, ru = os.wait4(cp.pid, 0)
    wall = time.time() - t0
    for a in agents:
        a.wait(timeout=60)
    if status != 0:
        sys.exit(f"coordinator failed with {n_sites} sites (see {root}/coordinator.log)")
    show = json.loads(subprocess.run([binp, "job", "show", "1", "--dir", coord, "--json"],
                                     capture_output=True, text=True).stdout)
    ok = [r for r in show["rounds"] if r["outcome"] == "ok"]
    sec = {k: statistics.median(r["seconds"][k] for r in ok)
           for k in ("advertise", "share", "masked", "consistency", "unmask", "finish", "secagg",
                     "total")}
    # the masked update of one site on the wire: its MaskedInput chunks per round
    db = sqlite3.connect(os.path.join(sites[0][1], "agent.db"))
    chunk_bytes, n_chunks = db.execute(
        "SELECT sum(size), count(*) FROM agent_message WHERE dir='E' AND type='chunk'").fetchone()
    # a MaskedInput is sent again (with its chunks) when the coordinator answered ERR_BUSY
    n_masked = db.execute(
        "SELECT count(*) FROM agent_message WHERE dir='E' AND type='masked_input'").fetchone()[0]
    sent_total = db.execute("SELECT sum(size) FROM agent_message WHERE dir='E'").fetchone()[0]
    db.close()
    max_rss_kb = int(open(rss_file).read().split()[-1])
    return {"sites": n_sites, "rounds_ok": len(ok), "max_rss_mb": max_rss_kb / 1024.0,
            "seconds": sec, "wall": wall, "chunk_bytes_per_update": chunk_bytes / max(1, n_masked),
            "uploads_per_round": n_masked / max(1, len(ok)),
            "sent_per_round": sent_total / max(1, len(ok))}


def ring_bits(n, q=8):
    need = n * ((1 << (q - 1)) - 1)
    return 1 + need.bit_length()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--sites", default="10,50")
    ap.add_argument("--work", default="/tmp")
    a = ap.parse_args()
    params = 101770 + 2  # the MLP's parameters and the sample-count limbs

    print("\n## Federation\n")
    print(f"`scripts/bench federation` ({os.cpu_count()} cores; `condenser demo` defaults: 3 sites, "
          f"12 rounds of 1 local epoch, Dirichlet(0.5) shares of 50,000 private images, 2 QAT "
          f"rounds; median of {a.repeat}):\n")
    rows = demo(a.bin, a.repeat)
    med = lambda k: statistics.median(r[k] for r in rows)
    print("| quantity | value |")
    print("|---|---|")
    print(f"| teacher accuracy | {med('teacher_accuracy'):.4f} |")
    print(f"| federated student, float / int8 | {med('federated_float_accuracy'):.4f} / "
          f"{med('federated_int8_accuracy'):.4f} |")
    print(f"| same student distilled centrally, float / int8 | {med('central_float_accuracy'):.4f}"
          f" / {med('central_int8_accuracy'):.4f} |")
    print(f"| federated int8 - central float (target > -1.5 points) | "
          f"{-med('gap_int8_vs_central_points'):+.2f} points |")
    print(f"| SecAgg+ share of round time (target < 5%) | {100 * med('secagg_share_of_round_time'):.1f}% |")
    sent = statistics.median(s["sent_bytes"] / s["data_bytes"] for r in rows for s in r["sites"])
    print(f"| bytes a site sent / its data (whole job) | {100 * sent:.1f}% |")
    print(f"| int8 artifact / float model | {med('artifact_bytes'):.0f} / {med('float_model_bytes'):.0f} bytes |")
    wall = lambda k: statistics.median(r["seconds"][k] for r in rows)
    print(f"| wall time (teacher, federation, central reference) | {wall('wall'):.0f} s "
          f"({wall('teacher'):.0f}, {wall('federation'):.0f}, {wall('central_reference'):.0f}) |")

    print("\nScale: one coordinator, N agent processes on loopback, the same 101,770-parameter "
          "student, 3 rounds (medians over rounds):\n")
    print("| sites | coordinator peak RSS | round | advertise | share | masked (training) | "
          "consistency | unmask + finish | SecAgg+ share | masked update on the wire |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in [int(x) for x in a.sites.split(",")]:
        r = scale(a.bin, n, 3, a.work)
        s = r["seconds"]
        secagg = s["secagg"]
        print(f"| {n} | {r['max_rss_mb']:.0f} MB | {s['total']:.2f} s | {s['advertise']:.3f} | "
              f"{s['share']:.3f} | {s['masked']:.3f} | {s['consistency']:.3f} | "
              f"{s['unmask'] + s['finish']:.3f} | {100 * secagg / s['total']:.1f}% | "
              f"{r['chunk_bytes_per_update'] / params:.3f} B/param ({ring_bits(n)}-bit ring) |")

    print("\nBytes per parameter of a masked 8-bit update (ring width for n sites, "
          "crypto/fixedpoint.h), against Flower's SecAgg+ (64-bit values):\n")
    print("| sites | 3 | 10 | 50 | 100 | 256 | Flower |")
    print("|---|---|---|---|---|---|---|")
    print("| bytes/param | " + " | ".join(f"{ring_bits(n) / 8:.3f}" for n in (3, 10, 50, 100, 256))
          + " | 8 |")


if __name__ == "__main__":
    main()
