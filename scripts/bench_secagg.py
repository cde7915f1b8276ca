#!/usr/bin/python3
"""scripts/bench secagg: runs `condenser bench secagg` over the matrix of docs/benchmarks.md
(100 and 500 clients, 100k and 1M values, 0/10/30% dropout), each REPEAT times (medians), with
the NumPy pairwise-masking peer (scripts/bench_secagg_numpy.py) on the same round shape, and
prints the markdown section for docs/benchmarks.md.

usage: bench_secagg.py --bin build/condenser [--threads 2] [--repeat 3] [--numpy-max-values D]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", default="100,500")
    ap.add_argument("--values", default="100000,1000000")
    ap.add_argument("--dropouts", default="0,0.1,0.3")
    ap.add_argument("--numpy-max-values", type=int, default=100000,
                    help="run the NumPy peer only up to this many values (it is slow)")
    ap.add_argument("--extra", default="", help="extra options for condenser bench secagg")
    a = ap.parse_args()
    try:
        subprocess.run(["/usr/bin/python3", "-c", "import numpy, cryptography"], check=True,
                       capture_output=True)
        have_numpy = True
    except subprocess.CalledProcessError:
        have_numpy = False
        print("note: python3-numpy or python3-cryptography missing; no NumPy column", file=sys.stderr)

    rows_out = []
    prg = None
    for n in map(int, a.clients.split(",")):
        for d in map(int, a.values.split(",")):
            for p in map(float, a.dropouts.split(",")):
                cmd = [a.bin, "bench", "secagg", "--clients", str(n), "--values", str(d),
                       "--dropout", str(p), "--threads", str(a.threads), "--json"] + a.extra.split()
                runs = [run_json(cmd) for _ in range(a.repeat)]
                r = runs[0]
                if prg is None:
                    prg = {k: statistics.median(x["prg_gbps"][k] for x in runs) for k in r["prg_gbps"]}
                np_client = np_server = None
                if have_numpy and d <= a.numpy_max_values:
                    nr = run_json(["/usr/bin/python3", os.path.join(HERE, "bench_secagg_numpy.py"),
                                   "--clients", str(n), "--values", str(d), "--dropout", str(p),
                                   "--degree", str(r["degree"]), "--bits", str(r["ring_bits"]),
                                   "--json"])
                    np_client, np_server = nr["client_mask_s"], nr["server_unmask_s"]
                rows_out.append((n, d, p, r, med(runs, "client_mask_s"), med(runs, "client_share_keys_s"),
                                 med(runs, "server_add_masked_s"), med(runs, "server_unmask_s"),
                                 med(runs, "server_unmask_keys_s"), med(runs, "server_unmask_masks_s"),
                                 np_client, np_server))
                print(f"done n={n} d={d} p={p}", file=sys.stderr)

    ms = lambda s: f"{s * 1e3:.1f}" if s is not None else "-"
    print("| clients | values | dropout | degree (k) | t | ring | client share keys ms | client mask ms "
          "| NumPy client mask ms | server add all masked ms | server unmask ms (keys + masks) "
          "| NumPy server unmask ms | NumPy / ours (unmask) | masked / packed bytes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (n, d, p, r, cm, cs, sa, su, sk, sm, npc, nps) in rows_out:
        ratio = f"{nps / su:.1f}x" if nps else "-"
        print(f"| {n} | {d // 1000}k | {p * 100:.0f}% | {r['degree']} ({r['degree'] + 1}) | {r['threshold']} "
              f"| 2^{r['ring_bits']} | {ms(cs)} | {ms(cm)} | {ms(npc)} | {ms(sa)} | {ms(su)} ({ms(sk)} + {ms(sm)}) "
              f"| {ms(nps)} | {ratio} | {r['masked_bytes']} / {r['packed_plaintext_bytes']} "
              f"= {r['wire_ratio']:.4f} |")
    print()
    print(f"Mask generators (keystream, one core): AES-256-CTR/OpenSSL {prg['aes256ctr_openssl']:.2f} GB/s, "
          f"ChaCha20/OpenSSL {prg['chacha20_openssl']:.2f} GB/s, ChaCha20/libsodium {prg['chacha20_sodium']:.2f} GB/s.")


if __name__ == "__main__":
    main()
