#!/usr/bin/python3
"""NumPy peer of `condenser bench secagg`: pairwise masking written the way a Python federated
learning stack would write it, timed on the same round shape so that docs/benchmarks.md can put
the two side by side.

What it does, per round (n clients, d values, dropout fraction P after sharing, degree k-1):
  client:  y = x + PRG(b) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv) mod 2^bits, with
           s_uv = HKDF-SHA256(X25519(s_u, s_v)) (the `cryptography` package) and PRG a NumPy
           PCG64 generator seeded with all 256 bits of the seed (random_raw words viewed as
           16- or 32-bit lanes);
  server:  sum of the survivors' y, minus each survivor's PRG(b), minus the pairwise masks each
           dropped client shared with surviving neighbours (X25519 with the dropped client's
           rebuilt key + HKDF + PRG per pair).
Shamir reconstruction and share encryption are left out (they are a small part of the C
server's time, reported separately there), so this peer is, if anything, flattered.

Usage: bench_secagg_numpy.py --clients N --values D --dropout P --degree K --bits B [--json]
Only /usr/bin/python3 with python3-numpy and python3-cryptography; never a runtime dependency.
"""
import argparse
import hashlib
import hmac
import json
import os
import statistics
import sys
import time

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def hkdf(ikm, info):
    prk = hmac.new(b"condenser-secagg-v1", ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def prg(seed, d, bits):
    """d ring elements from a 256-bit seed."""
    g = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int.from_bytes(seed, "little"))))
    lane = np.uint16 if bits <= 16 else np.uint32
    per = 8 // np.dtype(lane).itemsize
    raw = g.bit_generator.random_raw((d + per - 1) // per)
    return raw.view(lane)[:d].astype(np.uint32)


def neighbours(n, degree, rng):
    if degree >= n - 1:
        return [list(range(n)) for _ in range(n)]
    perm = rng.permutation(n)
    h = degree // 2
    nb = [None] * n
    for i in range(n):
        u = perm[i]
        nb[u] = sorted({int(perm[(i + j) % n]) for j in range(-h, h + 1)})
    return nb


def pair_seed(sk, pk_bytes, u, v):
    shared = sk.exchange(X25519PublicKey.from_public_bytes(pk_bytes))
    return hkdf(shared, b"mask\0\0\0\0" + min(u, v).to_bytes(4, "little") + max(u, v).to_bytes(4, "little"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--values", type=int, required=True)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--degree", type=int, required=True)
    ap.add_argument("--bits", type=int, default=16)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    n, d, bits = a.clients, a.values, a.bits
    mask = np.uint32((1 << bits) - 1) if bits < 32 else np.uint32(0xFFFFFFFF)
    rng = np.random.default_rng(1)
    nb = neighbours(n, a.degree, rng)
    sks = [X25519PrivateKey.generate() for _ in range(n)]
    pks = [k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) for k in sks]
    seeds = [os.urandom(32) for _ in range(n)]
    n_drop = round(a.dropout * n)
    dropped = set(int(u) for u in rng.choice(np.arange(a.samples, n), n_drop, replace=False))
    alive = [u for u in range(n) if u not in dropped]

    # Client masking, timed for `samples` clients (full masking with every neighbour).
    t_client = []
    ys = {}
    for u in range(a.samples):
        x = rng.integers(0, 1 << bits, size=d, dtype=np.uint32)
        t = time.perf_counter()
        y = x + prg(seeds[u], d, bits)
        for v in nb[u]:
            if v == u:
                continue
            m = prg(pair_seed(sks[u], pks[v], u, v), d, bits)
            y = y + m if u < v else y - m
        y &= mask
        t_client.append(time.perf_counter() - t)
        ys[u] = y

    # Server: the survivors' sum arrives (its value does not change the unmasking work), then
    # self masks and the dropped clients' pairwise masks are removed.
    acc = np.zeros(d, dtype=np.uint32)
    t = time.perf_counter()
    for u in alive:
        acc -= prg(seeds[u], d, bits)
    for u in dropped:
        for v in nb[u]:
            if v == u or v in dropped:
                continue
            m = prg(pair_seed(sks[u], pks[v], u, v), d, bits)
            acc = acc - m if v < u else acc + m
    acc &= mask
    t_server = time.perf_counter() - t
    res = {
        "clients": n, "values": d, "dropout": a.dropout, "degree": a.degree, "bits": bits,
        "numpy": np.__version__, "client_mask_s": statistics.median(t_client),
        "server_unmask_s": t_server,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(f"numpy {np.__version__}: {n} clients x {d} values, {n_drop} dropped, degree {a.degree}, "
              f"ring 2^{bits}: client masking {res['client_mask_s']*1e3:.1f} ms, "
              f"server unmask {t_server*1e3:.1f} ms (1 thread)")


if __name__ == "__main__":
    sys.exit(main())
