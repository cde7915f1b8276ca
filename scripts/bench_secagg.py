#!/usr/bin/python3
"""scripts/bench secagg: runs `condenser bench secagg` over the matrix of docs/benchmarks.md
(100 and 500 clients, 100k and 1M values, 0/10/30% dropout, plus two 500-client variants at 30%:
a 16-bit ring and a 1e-3 round-failure target), each REPEAT times (medians), with the NumPy
pairwise-masking peer (scripts/bench_secagg_numpy.py) on the same round shape, and prints the
markdown section for docs/benchmarks.md.

Wall-clock times are medians; CPU times (process CPU seconds, all threads) are shown next to them
because on a shared machine the wall clock also counts waiting for a core.

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", default="100,500")
    ap.add_argument("--values", default="100000,1000000")
    ap.add_argument("--dropouts", default="0,0.1,0.3")
    ap.add_argument("--no-variants", action="store_true", help="skip the 30%% variant rows")
    ap.add_argument("--numpy-max-values", type=int, default=100000,
                    help="run the NumPy peer only up to this many values (it is slow)")
    a = ap.parse_args()
    try:
        subprocess.run(["/usr/bin/python3", "-c", "import numpy, cryptography"], check=True,
                       capture_output=True)
        have_numpy = True
    except subprocess.CalledProcessError:
        have_numpy = False
        print("note: python3-numpy or python3-cryptography missing; no NumPy column", file=sys.stderr)

    configs = [(n, d, p, []) for n in map(int, a.clients.split(","))
               for d in map(int, a.values.split(",")) for p in map(float, a.dropouts.split(","))]
    if not a.no_variants:
        configs += [(500, 100000, 0.3, ["--value-bits", "7"]),
                    (500, 100000, 0.3, ["--value-bits", "7", "--fail-prob", "1e-3"])]
    rows, prg, loads = [], None, []
    for n, d, p, extra in configs:
        cmd = [a.bin, "bench", "secagg", "--clients", str(n), "--values", str(d), "--dropout",
               str(p), "--threads", str(a.threads), "--json"] + extra
        runs = [run_json(cmd) for _ in range(a.repeat)]
        med = lambda k: statistics.median(r[k] for r in runs)
        r = runs[0]
        loads += [x["load_avg"] for x in runs]
        if prg is None:
            prg = {k: statistics.median(x["prg_gbps"][k] for x in runs) for k in r["prg_gbps"]}
        npc = nps = None
        if have_numpy and d <= a.numpy_max_values:
            nr = run_json(["/usr/bin/python3", os.path.join(HERE, "bench_secagg_numpy.py"),
                           "--clients", str(n), "--values", str(d), "--dropout", str(p),
                           "--degree", str(r["degree"]), "--bits", str(r["ring_bits"]), "--json"])
            npc, nps = nr["client_mask_s"], nr["server_unmask_s"]
        rows.append(dict(n=n, d=d, p=p, extra=" ".join(extra), r=r, npc=npc, nps=nps,
                         **{k: med(k) for k in ("client_mask_s", "client_mask_cpu_s",
                                                "client_share_keys_s", "client_unmask_s",
                                                "server_add_masked_s", "server_unmask_s",
                                                "server_unmask_cpu_s", "server_unmask_keys_s",
                                                "server_unmask_masks_s")}))
        print(f"done n={n} d={d} p={p} {' '.join(extra)}", file=sys.stderr)

    ms = lambda s: f"{s * 1e3:.1f}" if s is not None else "-"
    print(f"Load average during the runs: median {statistics.median(loads):.1f} "
          f"(min {min(loads):.1f}, max {max(loads):.1f}) on {os.cpu_count()} cores.")
    print()
    print("| clients | values | dropout | options | k (t) | ring | client share keys ms "
          "| client mask ms (CPU ms) | NumPy client mask ms | client unmask ms "
          "| server add all masked ms | server unmask ms: keys + masks (CPU s) "
          "| NumPy server unmask ms | NumPy / ours | masked / packed bytes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for x in rows:
        r = x["r"]
        ratio = f"{x['nps'] / x['server_unmask_s']:.1f}x" if x["nps"] else "-"
        print(f"| {x['n']} | {x['d'] // 1000}k | {x['p'] * 100:.0f}% | {x['extra'] or '-'} "
              f"| {r['degree'] + 1} ({r['threshold']}) | 2^{r['ring_bits']} "
              f"| {ms(x['client_share_keys_s'])} "
              f"| {ms(x['client_mask_s'])} ({ms(x['client_mask_cpu_s'])}) | {ms(x['npc'])} "
              f"| {ms(x['client_unmask_s'])} | {ms(x['server_add_masked_s'])} "
              f"| {ms(x['server_unmask_s'])}: {ms(x['server_unmask_keys_s'])} + "
              f"{ms(x['server_unmask_masks_s'])} ({x['server_unmask_cpu_s']:.2f}) "
              f"| {ms(x['nps'])} | {ratio} "
              f"| {r['masked_bytes']} / {r['packed_plaintext_bytes']} = {r['wire_ratio']:.4f} |")
    print()
    print(f"Mask generators (keystream, one core, median): AES-256-CTR/OpenSSL "
          f"{prg['aes256ctr_openssl']:.2f} GB/s, ChaCha20/OpenSSL {prg['chacha20_openssl']:.2f} GB/s, "
          f"ChaCha20/libsodium {prg['chacha20_sodium']:.2f} GB/s.")


if __name__ == "__main__":
    main()
