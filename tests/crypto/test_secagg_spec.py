#!/usr/bin/env python3
"""test_secagg_spec.py: an independent implementation of the SecAgg+ byte layout, written from
docs/protocol.md section 11 alone (not from the C code), reproducing the known answers in
tests/crypto/secagg_kat.txt that tests/crypto/test_secagg_kat.c checks against the C code.
Inputs are the ones test_secagg_kat.c describes. Needs python3-cryptography (X25519, Ed25519,
AES-256-CTR, ChaCha20-Poly1305); HChaCha20 (for XChaCha20-Poly1305), HKDF-SHA256, GF(2^8) and
everything else are written here.

Usage: test_secagg_spec.py secagg_kat.txt
"""
import hashlib
import hmac
import struct
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives import serialization

RAW = serialization.Encoding.Raw
RAWPUB = serialization.PublicFormat.Raw


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def u32(x):
    return struct.pack("<I", x)


def u64(x):
    return struct.pack("<Q", x)


# --- primitives as the document names them --------------------------------------------------

def sign(seed, ctx, m):
    """Ed25519 over "condenser-signature-v1" | u8 len(ctx) | ctx | SHA-256(m)."""
    c = ctx.encode()
    return Ed25519PrivateKey.from_private_bytes(seed).sign(
        b"condenser-signature-v1" + bytes([len(c)]) + c + sha256(m))


def ed_pk(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(RAW, RAWPUB)


def x_pk(sk):
    return X25519PrivateKey.from_private_bytes(sk).public_key().public_bytes(RAW, RAWPUB)


def x_dh(sk, pk):
    return X25519PrivateKey.from_private_bytes(sk).exchange(X25519PublicKey.from_public_bytes(pk))


def hkdf(salt, ikm, info, n):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:n]


def aes_ctr(key, n):
    """AES-256 keystream, 16-byte big-endian counter block starting at 0."""
    e = Cipher(algorithms.AES(key), modes.CTR(b"\0" * 16)).encryptor()
    return e.update(b"\0" * n)


def hchacha20(key, nonce16):
    def rotl(v, c):
        return ((v << c) & 0xffffffff) | (v >> (32 - c))

    def qr(s, a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = rotl(s[b] ^ s[c], 7)

    s = list(struct.unpack("<4I", b"expand 32-byte k")) + list(struct.unpack("<8I", key)) + \
        list(struct.unpack("<4I", nonce16))
    for _ in range(10):
        qr(s, 0, 4, 8, 12); qr(s, 1, 5, 9, 13); qr(s, 2, 6, 10, 14); qr(s, 3, 7, 11, 15)
        qr(s, 0, 5, 10, 15); qr(s, 1, 6, 11, 12); qr(s, 2, 7, 8, 13); qr(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha_seal(key, nonce24, pt, ad):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\0" * 4 + nonce24[16:], pt, ad)


def gf_mul(a, b):
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = ((a << 1) ^ 0x11b) if a & 0x80 else a << 1
        b >>= 1
    return r


def shamir(secret, t, xs, coeff):
    """coeff(i, j): coefficient of x^i (1..t-1) for byte j."""
    out = b""
    for x in xs:
        share = bytearray()
        for j, s in enumerate(secret):
            y, xp = s, 1
            for i in range(1, t):
                xp = gf_mul(xp, x)
                y ^= gf_mul(coeff(i, j), xp)
            share.append(y)
        out += bytes(share)
    return out


def header(t, rid, frm, to):
    return b"CSA1" + bytes([t]) + u64(rid) + u32(frm) + u32(to)


SERVER = 0xffffffff


def pair_key(label, D, u, v, sk, pk):
    info = label.encode().ljust(8, b"\0") + D + u32(min(u, v)) + u32(max(u, v))
    return hkdf(b"condenser-secagg-v1", x_dh(sk, pk), info, 32)


def graph(n, degree, G):
    if degree == n - 1:
        return [list(range(n)) for _ in range(n)]
    ks = aes_ctr(G, 4 * 16 * n + 4096)
    pos = 0
    P = list(range(n))
    for i in range(n - 1, 0, -1):
        bound = i + 1
        limit = (2 ** 32 // bound) * bound
        while True:
            r = struct.unpack_from("<I", ks, pos)[0]
            pos += 4
            if r < limit:
                break
        j = r % bound
        P[i], P[j] = P[j], P[i]
    h = degree // 2
    nb = [None] * n
    for i in range(n):
        s = {P[i]}
        for m in range(1, h + 1):
            s.add(P[(i + m) % n])
            s.add(P[(i - m) % n])
        nb[P[i]] = sorted(s)
    return nb


def mask_words(seed, length, bits):
    w = 16 if bits <= 16 else 32
    ks = aes_ctr(seed, length * w // 8 + 64)
    fmt = "<H" if w == 16 else "<I"
    return [struct.unpack_from(fmt, ks, i * w // 8)[0] for i in range(length)]


def pack(vals, bits):
    acc, have, out = 0, 0, bytearray()
    for v in vals:
        acc |= (v & ((1 << bits) - 1)) << have
        have += bits
        while have >= 8:
            out.append(acc & 0xff)
            acc >>= 8
            have -= 8
    if have:
        out.append(acc & 0xff)
    return bytes(out)


def bitlen(v):
    return v.bit_length()


# --- the known answers -------------------------------------------------------------------------

def compute():
    kat = {}
    N, LEN, BITS = 12, 40, 13
    rid = (7 << 40) | (3 << 12) | 2
    rseed = bytes(range(32))
    degree, t, ms = 4, 3, 7
    params = b"CSP1" + u64(rid) + rseed + u32(N) + u32(degree) + u32(t) + u32(ms) + u32(LEN) + \
        u32(BITS)
    kat["params"] = params
    seeds = [bytes([0x01 + u]) * 32 for u in range(N)]
    pks = [ed_pk(s) for s in seeds]
    certs = [bytes([0xc0 + u]) * 32 for u in range(N)]
    D = sha256(params, b"condenser-secagg-roster-v1", *[pks[u] + certs[u] for u in range(N)])
    kat["D"] = D
    csk = [bytes([0x10 + u]) * 32 for u in range(N)]
    ssk = [bytes([0x50 + u]) * 32 for u in range(N)]
    bs = [bytes([0x90 + u]) * 32 for u in range(N)]
    cpk = [x_pk(k) for k in csk]
    spk = [x_pk(k) for k in ssk]
    adverts = []
    for u in range(N):
        commit = sha256(b"condenser-secagg-commit-v1", D, u32(u), bs[u])
        sig = sign(seeds[u], "secagg-advert", D + u32(u) + pks[u] + cpk[u] + spk[u] + commit)
        adverts.append(header(1, rid, u, SERVER) + pks[u] + cpk[u] + spk[u] + commit + sig)
    kat["advert3"] = adverts[3]
    G = sha256(b"condenser-secagg-graph-v2", D, b"".join(adverts))
    kat["graph_seed"] = G
    nb = graph(N, degree, G)
    kat["neighbourhoods"] = b"".join(u32(v) for u in range(N) for v in nb[u])
    kat["pair_mask_2_7"] = pair_key("mask", D, 2, 7, ssk[2], spk[7])
    assert kat["pair_mask_2_7"] == pair_key("mask", D, 7, 2, ssk[7], spk[2])
    kshare = pair_key("share", D, 2, 7, csk[2], cpk[7])
    kat["pair_share_2_7"] = kshare
    coeff = lambda i, j: (0x21 * i + j) % 256
    sh_b = shamir(bs[3], 3, [1, 2, 3, 4, 5], coeff)
    sh_s = shamir(ssk[3], 3, [1, 2, 3, 4, 5], coeff)
    kat["shamir_b3"] = sh_b
    kat["shamir_s3"] = sh_s
    nonce = b"\xaa" * 24
    pt = u32(2) + u32(7) + sh_b[32:64] + sh_s[32:64]
    ad = b"condenser-secagg-share-v1" + D + u32(2) + u32(7)
    kat["share_ct_2_7"] = nonce + xchacha_seal(kshare, nonce, pt, ad)
    kat["prg_b3"] = aes_ctr(bs[3], 96)
    x = [(i * 97) % (1 << BITS) for i in range(LEN)]
    y = list(x)
    for i, w in enumerate(mask_words(bs[0], LEN, BITS)):
        y[i] += w
    for v in nb[0]:
        if v == 0:
            continue
        words = mask_words(pair_key("mask", D, 0, v, ssk[0], spk[v]), LEN, BITS)
        for i, w in enumerate(words):
            y[i] = y[i] + w if 0 < v else y[i] - w
    y = [v % (1 << BITS) for v in y]
    kat["masked0"] = header(5, rid, 0, SERVER) + u32(LEN) + bytes([BITS]) + pack(y, BITS)
    u2, u3 = bytes([0xff, 0x0f]), bytes([0xdf, 0x0f])
    S = sha256(b"condenser-secagg-survivors-v1", D, u32(N), u2, u3)
    kat["survivors"] = S
    kat["consistency3"] = sign(seeds[3], "secagg-consistency", D + u32(3) + S)
    # fixed point: dim 10, 12 sites, q 8, W 1000
    dim, nmax, q, W = 10, 12, 8, 1000
    Q = 2 ** (q - 1) - 1
    b = 1 + bitlen(nmax * Q)
    lb = max(l for l in range(1, 33) if nmax * (2 ** l - 1) <= 2 ** b - 1)
    limbs = lambda cap: -(-bitlen(cap) // lb)
    lw, ll = limbs(W), limbs(W * 256 * 16)
    length = dim + 3 * lw + ll
    kat["fxp_layout"] = u32(b) + u32(lb) + u32(lw) + u32(ll) + u32(length)

    def split(v, n):
        return [(v >> (j * lb)) & ((1 << lb) - 1) for j in range(n)]

    validated, correct, loss = 1500, 900, 0.6931
    m = min(validated, W)
    c = min(correct, validated)
    if validated > m:
        c = int(c * m / validated + 0.5)
    lq = min(int(min(loss, 16) * 256 * m + 0.5), m * 4096)
    limb_vals = split(min(777, W), lw) + split(m, lw) + split(c, lw) + split(lq, ll)
    kat["fxp_limbs"] = b"".join(u32(v) for v in limb_vals)
    return kat


def main():
    want = {}
    for line in open(sys.argv[1]):
        if line.startswith("#") or not line.strip():
            continue
        name, hx = line.split()
        want[name] = bytes.fromhex(hx)
    got = compute()
    bad = [k for k in want if got.get(k) != want[k]]
    missing = [k for k in want if k not in got]
    for k in bad:
        print("%s: document gives %s, C gives %s" % (k, got.get(k, b"").hex(), want[k].hex()))
    if bad or missing or len(want) != 16:
        print("test_secagg_spec: %d of %d known answers differ" % (len(bad), len(want)))
        sys.exit(1)
    print("test_secagg_spec: all %d known answers reproduced from the document" % len(want))


if __name__ == "__main__":
    main()
