#!/usr/bin/env python3
"""scripts/bench_federation_dp.py: the federated DP target of issue 18 (docs/benchmarks.md).

A real federation on loopback: `condenser coordinator run` and 3 `condenser agent` processes,
every site training its rounds with DP-SGD (record-level DP at each site, docs/privacy.md).
Fashion-MNIST's 60,000 training images: the first 1,000 are public (the job's teacher and the
int8 calibration samples; never a site's), the other 59,000 split at random into 3 equal sites
(each holds out 5% as its local validation split, so a site trains on about 18,683 records).
The job asks for (epsilon, 1e-5)-DP at a site of that size (--dp-site-samples); each site logs
its own epsilon (dp.spend), which this script reads back with `condenser audit privacy`. The
student's loss is plain cross-entropy (--alpha 0: the teacher's soft targets have weight 0, so
the teacher, trained on the public images only, carries nothing into the gradients).

Reports: the test accuracy (10,000 test images) of the final float model and of the signed int8
artifact (`condenser eval`), each site's epsilon as recomputed from its audit log, wall time.

Usage: scripts/bench_federation_dp.py --bin build-rel/condenser [--epsilon 3] [--rounds 40]
       [--batch 2048] [--local-epochs 1] [--lr 0.4] [--dp-clip 1] [--server-momentum 0.5] ...
       [--dp-mode distributed --dp-min-survivors 2] (site-level distributed DP instead: each
       spend is one release of the distributed discrete Gaussian at min_survivors parties)
The defaults are run F of docs/benchmarks.md.
Runs only condenser and the Python standard library. Prints one JSON object.
"""
import argparse
import gzip
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

FMNIST = "/usr/share/datasets/fashion-mnist"
ARCH = ("conv2d(16,8,stride=2,pad=3) relu maxpool(2,stride=1) conv2d(32,4,stride=2) relu "
        "maxpool(2,stride=1) flatten dense(32) relu dense(10)")


def run(args, log):
    with open(log, "ab") as f:
        r = subprocess.run(args, stdout=f, stderr=f)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(args)} (see {log})")


def out(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(args)}\n{r.stderr}")
    return r.stdout


def write_idx(path_img, path_lab, imgs, labs, idx):
    with open(path_img, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(idx), 28, 28))
        for i in idx:
            f.write(imgs[i * 784:(i + 1) * 784])
    with open(path_lab, "wb") as f:
        f.write(struct.pack(">II", 0x801, len(idx)))
        f.write(bytes(labs[i] for i in idx))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", default=None)
    ap.add_argument("--epsilon", type=float, default=3.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=0.4, help="local SGD rate")
    ap.add_argument("--dp-clip", type=float, default=1.0)
    ap.add_argument("--server-lr", type=float, default=1.0)
    ap.add_argument("--server-momentum", type=float, default=0.5)
    ap.add_argument("--clip", type=float, default=0.2, help="per-coordinate update clip")
    ap.add_argument("--value-bits", type=int, default=12)
    ap.add_argument("--arch", default=ARCH)
    ap.add_argument("--threads", type=int, default=1, help="training threads per site")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dp-mode", default="local", choices=("local", "distributed"),
                    help="distributed: each site adds a share of discrete Gaussian noise to its "
                    "clipped update inside the secure sum (site-level DP, docs/privacy.md)")
    ap.add_argument("--dp-min-survivors", type=int, default=2)
    a = ap.parse_args()
    binp = os.path.abspath(a.bin)
    root = a.work or tempfile.mkdtemp(prefix="cnd-bench-dp-")
    os.makedirs(root, exist_ok=True)
    log = os.path.join(root, "setup.log")
    ca, coord = os.path.join(root, "ca"), os.path.join(root, "coord")
    run([binp, "ca", "init", "--dir", ca, "--name", "bench-dp"], log)
    run([binp, "coordinator", "init", "--dir", coord, "--ca", ca], log)
    imgs = gzip.open(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")).read()[16:]
    labs = gzip.open(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz")).read()[8:]
    pub = list(range(1000))
    rest = list(range(1000, 60000))
    random.Random(a.seed).shuffle(rest)
    write_idx(os.path.join(root, "pub-img.idx"), os.path.join(root, "pub-lab.idx"), imgs, labs,
              pub)
    pubspec = f"idx:{root}/pub-img.idx,{root}/pub-lab.idx"
    teacher = os.path.join(root, "teacher.cnd")
    run([binp, "train", "--data", pubspec, "--arch", "flatten dense(32) relu dense(10)",
         "--epochs", "1", "--no-checkpoint", "--out", teacher], log)
    n_sites, validation = 3, 0.05
    per = len(rest) // n_sites
    site_n = round(per * (1 - validation))
    sites = []
    for s in range(n_sites):
        name = f"site-{s}"
        d = os.path.join(root, name)
        run([binp, "keygen", "--out", d], log)
        run([binp, "ca", "issue", "--dir", ca, "--name", name, "--role", "site", "--pubkey",
             os.path.join(d, "identity.pub"), "--out", os.path.join(d, "site.pem")], log)
        run([binp, "site", "enroll", name, "--cert", os.path.join(d, "site.pem"), "--dir", coord],
            log)
        write_idx(os.path.join(d, "images.idx"), os.path.join(d, "labels.idx"), imgs, labs,
                  rest[s * per:(s + 1) * per])
        sites.append((name, d))
    run([binp, "job", "create", "--dir", coord, "--student-arch", a.arch, "--teacher", teacher,
         "--alpha", "0", "--rounds", str(a.rounds), "--sites", str(n_sites), "--quorum",
         str(n_sites), "--local-epochs", str(a.local_epochs), "--batch", str(a.batch), "--lr",
         str(a.lr), "--server-lr", str(a.server_lr), "--server-momentum",
         str(a.server_momentum), "--clip", str(a.clip), "--value-bits", str(a.value_bits),
         "--sample-cap", "20000", "--calib-data", pubspec, "--join-wait-ms", "600000",
         "--masked-ms", "3600000", "--seed", str(a.seed),
         "--dp-epsilon", str(a.epsilon), "--dp-delta", str(a.delta), "--dp-clip", str(a.dp_clip)]
        + (["--dp-site-samples", str(site_n)] if a.dp_mode == "local" else
           ["--dp-mode", "distributed", "--dp-min-survivors", str(a.dp_min_survivors)]), log)
    port_file = os.path.join(root, "endpoint")
    clog = open(os.path.join(root, "coordinator.log"), "wb")
    t0 = time.time()
    cp = subprocess.Popen([binp, "coordinator", "run", "--dir", coord, "--endpoint",
                           "tcp://127.0.0.1:*", "--endpoint-file", port_file, "--until-done"],
                          stdout=clog, stderr=clog)
    for _ in range(400):
        if os.path.exists(port_file):
            break
        time.sleep(0.05)
    endpoint = open(port_file).read().strip()
    pub_key = os.path.join(coord, "identity.pub")
    agents = []
    for name, d in sites:
        with open(os.path.join(d, "agent.ini"), "w") as f:
            f.write(f"[site]\nname = {name}\ndata = idx:images.idx,labels.idx\n"
                    f"validation = {validation}\n"
                    f"[identity]\nkey = identity.key\ncertificate = site.pem\n"
                    f"[coordinator]\nendpoint = {endpoint}\npublic_key = {pub_key}\n"
                    f"ca_cert = ../ca/ca.crt\nca_crl = ../ca/crl.pem\n"
                    f"[limits]\nthreads = {a.threads}\n"
                    f"[privacy]\nmax_epsilon_job = {a.epsilon * 1.01}\nmax_delta = {a.delta}\n"
                    f"require_dp = true\n")
        alog = open(os.path.join(d, "agent.log"), "wb")
        agents.append(subprocess.Popen([binp, "agent", "--config", os.path.join(d, "agent.ini"),
                                        "--until-done"], stdout=alog, stderr=alog))
    status = cp.wait()
    wall = time.time() - t0
    for p in agents:
        p.wait(timeout=120)
    if status != 0:
        sys.exit(f"coordinator failed (see {root}/coordinator.log)")
    fl, q8 = os.path.join(root, "final.cnd"), os.path.join(root, "final.cndq")
    run([binp, "job", "export", "1", "--dir", coord, "--out", fl], log)
    run([binp, "job", "export", "1", "--dir", coord, "--out", q8, "--format", "int8"], log)
    acc = {}
    test = (f"idx:{FMNIST}/t10k-images-idx3-ubyte.gz,{FMNIST}/t10k-labels-idx1-ubyte.gz")
    for k, m in (("float", fl), ("int8", q8)):
        acc[k] = json.loads(out([binp, "eval", m, "--data", test, "--json"]))["accuracy"]
    eps = []
    for name, d in sites:
        r = json.loads(out([binp, "audit", "privacy", os.path.join(d, "agent.db"), "--json"]))
        last = r["spends"][-1]
        eps.append({"site": name, "rounds": len(r["spends"]), "bad": r["bad"],
                    "epsilon": last["epsilon"], "q": last["q"], "sigma": last["sigma"],
                    "steps": sum(x["steps"] for x in r["spends"])})
    print(json.dumps({"work": root, "args": vars(a), "site_records": site_n,
                      "test_accuracy_float": acc["float"], "test_accuracy_int8": acc["int8"],
                      "int8_minus_float_points": 100 * (acc["int8"] - acc["float"]),
                      "sites": eps, "wall_s": round(wall, 1)}, indent=1))


if __name__ == "__main__":
    main()
