#!/usr/bin/env python3
"""test_dp_accountant.py: `condenser privacy` against an independent accountant written here
from the paper with mpmath (40 digits).

Mironov, Talwar, Zhang 2019 define the RDP of one step of the Poisson-sampled Gaussian
mechanism at order a as log(A_a) / (a - 1) with
    A_a = E_{z ~ N(0, s^2)} [((1 - q) + q exp((2z - 1) / (2 s^2)))^a].
The C accountant sums series for A_a (binomial for integer a, erfc series for fractional a).
Here A_a is that expectation, integrated numerically (mpmath.quad, tanh-sinh) for every order,
integer or not, and checked against the exact binomial sum at integer orders, so the two sides
share no formula beyond the definition. Composition over T steps is T times the per-step RDP;
(epsilon, delta) follows the improved conversion (Balle et al. 2020, Theorem 21) and the
standard one (Mironov 2017). Every RDP value and every epsilon must agree to 1e-6 relative on a
grid of (sampling rate, noise, steps, delta), and so must the epsilon of two different runs
composed (--compose); the noise solved for a target epsilon must reach it and be the smallest
that does (within 1e-5).

Usage: test_dp_accountant.py CONDENSER
"""
import json
import subprocess
import sys

import mpmath as mp

mp.mp.dps = 40


def a_quad(q, s, a):
    q, s, a = mp.mpf(q), mp.mpf(s), mp.mpf(a)

    def f(z):
        mu0 = mp.exp(-z * z / (2 * s * s)) / (s * mp.sqrt(2 * mp.pi))
        return mu0 * ((1 - q) + q * mp.exp((2 * z - 1) / (2 * s * s))) ** a

    # The integrand peaks near 0 (the (1-q) part) and near z = a (the q part); split there.
    pts = sorted(set([-mp.inf, -8 * s, mp.mpf(0), mp.mpf(0.5), a / 2, a, a + 8 * s, mp.inf]))
    return mp.quad(f, pts)


def a_binom(q, s, a):
    q, s = mp.mpf(q), mp.mpf(s)
    return mp.fsum(mp.binomial(a, k) * (1 - q) ** (a - k) * q ** k *
                   mp.exp(mp.mpf(k * k - k) / (2 * s * s)) for k in range(a + 1))


def rdp_step(q, s, a):
    if float(a).is_integer():
        la = mp.log(a_binom(q, s, int(a)))
        lq = mp.log(a_quad(q, s, a))
        # the integral and the binomial sum are the same number
        assert abs(la - lq) <= mp.mpf(1e-12) * abs(la) + mp.mpf(1e-30), (q, s, a, la, lq)
    else:
        la = mp.log(a_quad(q, s, a))
    return la / (mp.mpf(a) - 1)


def epsilon(rdps, delta, conversion):
    best = mp.inf
    for a, r in rdps:
        a = mp.mpf(a)
        if conversion == "standard":
            e = r + mp.log(1 / mp.mpf(delta)) / (a - 1)
        elif mp.mpf(delta) ** 2 + mp.expm1(-r) >= 0:
            e = mp.mpf(0)
        else:
            e = r + mp.log1p(-1 / a) - (mp.log(mp.mpf(delta)) + mp.log(a)) / (a - 1)
        best = min(best, e)
    return max(best, mp.mpf(0))


def run(binary, *args):
    out = subprocess.run([binary, "privacy", "--json", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("condenser privacy %s failed: %s" % (" ".join(args), out.stderr))
    return json.loads(out.stdout)


def rel(a, b):
    a, b = mp.mpf(a), mp.mpf(b)
    return abs(a - b) / max(abs(b), mp.mpf(1e-300))


def main():
    binary = sys.argv[1]
    failures = 0
    checks = 0
    # (sampling rate, noise): small and large q, noise from 0.6 to 4; orders: a default-like
    # list thinned to keep the integrals quick, fractional and integer, up to 256.
    orders = [1.1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.3, 4, 4.75, 5, 6, 7.5, 8, 10, 12, 16, 20.5,
              24, 32, 48, 64, 128, 256]
    olist = ",".join(repr(o) for o in orders)
    grid = [(0.001, 0.6), (256 / 60000, 1.1), (0.01, 0.8), (2048 / 60000, 1.5), (0.1, 2.0),
            (0.5, 4.0)]
    cache = {}
    for q, s in grid:
        per_step = {a: rdp_step(q, s, a) for a in orders}
        cache[(q, s)] = per_step
        for steps in (1, 1000, 14063):
            for delta in (1e-5, 1e-8):
                for conv in ("improved", "standard"):
                    args = ["--sampling-rate", repr(q), "--noise", repr(s), "--steps",
                            str(steps), "--delta", repr(delta), "--orders", olist,
                            "--conversion", conv, "--rdp"]
                    got = run(binary, *args)
                    rdps = [(a, steps * per_step[a]) for a in orders]
                    for (a, r), (ca, cr) in zip(rdps, got["rdp"]):
                        checks += 1
                        if ca != a or rel(cr, r) > 1e-6:
                            failures += 1
                            print("RDP q=%g s=%g T=%d order %g: C %.12g, mpmath %s" %
                                  (q, s, steps, a, cr, mp.nstr(r, 15)))
                    want = epsilon(rdps, delta, conv)
                    checks += 1
                    if rel(got["epsilon"], want) > 1e-6:
                        failures += 1
                        print("epsilon q=%g s=%g T=%d delta=%g %s: C %.12g, mpmath %s" %
                              (q, s, steps, delta, conv, got["epsilon"], mp.nstr(want, 15)))
    # Composition of runs with different rates, noise and steps (a site's jobs): RDP adds up
    # at each order.
    for (q1, s1, t1), (q2, s2, t2) in (((0.01, 0.8, 700), (0.1, 2.0, 50)),
                                       ((2048 / 60000, 1.5, 1200), (0.001, 0.6, 14063))):
        got = run(binary, "--compose", "%r:%r:%d,%r:%r:%d" % (q1, s1, t1, q2, s2, t2),
                  "--orders", olist)
        rdps = [(a, t1 * cache[(q1, s1)][a] + t2 * cache[(q2, s2)][a]) for a in orders]
        want = epsilon(rdps, 1e-5, "improved")
        checks += 1
        if rel(got["epsilon"], want) > 1e-6:
            failures += 1
            print("composed %r: C %.12g, mpmath %s" % (got["runs"], got["epsilon"],
                                                       mp.nstr(want, 15)))
    # Solving for the noise: the C solution reaches the target here, and 1e-5 less noise
    # does not.
    for q, steps, target in ((256 / 60000, 14063, 3.0), (2048 / 60000, 1172, 3.0),
                             (0.01, 500, 1.0)):
        got = run(binary, "--sampling-rate", repr(q), "--steps", str(steps), "--epsilon",
                  repr(target), "--orders", olist)
        s = got["noise_multiplier"]
        e_at = epsilon([(a, steps * rdp_step(q, s, a)) for a in orders], 1e-5, "improved")
        e_less = epsilon([(a, steps * rdp_step(q, s * (1 - 1e-5), a)) for a in orders], 1e-5,
                         "improved")
        checks += 1
        if not (e_at <= target * (1 + 1e-9) and e_less > target):
            failures += 1
            print("solve q=%g T=%d eps %g: noise %.9g gives %s, 1e-5 less gives %s" %
                  (q, steps, target, s, mp.nstr(e_at, 12), mp.nstr(e_less, 12)))
    print("test_dp_accountant.py: %d checks, %d failed" % (checks, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
