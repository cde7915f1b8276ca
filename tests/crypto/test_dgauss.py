#!/usr/bin/env python3
"""test_dgauss.py: goodness of fit of crypto/dgauss (the exact discrete Gaussian sampler) against
the distribution's pmf computed independently here with numpy.

N_Z(0, s2) gives x the probability exp(-x^2 / (2 s2)) / Z, Z summed over the integers (here over
|x| <= 40 sqrt(s2) + 40, beyond which the terms are below 1e-300). For each variance the C
program draws N seeded samples (test_dgauss --histogram S2 N); this script checks
  - the sample mean and variance against the pmf's (0 and sum x^2 p(x)) within 5 standard errors;
  - Pearson's chi-square over the bins with expected count >= 5 (the tails pooled into one bin)
    below the 1 - 1e-6 quantile of chi-square with (bins - 1) degrees of freedom (Wilson-Hilferty
    approximation);
and, as a control that the test can fail, that the same counts are rejected (by the chi-square or
the variance test) against the pmf of a variance 5% larger, and at s2 = 1 by the chi-square
against a rounded continuous Gaussian (variance 13/12; the discrete Gaussian's is just below 1).
Usage: test_dgauss.py path/to/test_dgauss
"""
import subprocess
import sys

import numpy as np

Z_1E6 = 4.753  # one-sided standard normal quantile at 1e-6


def pmf(s2):
    m = int(40 * np.sqrt(s2)) + 40
    xs = np.arange(-m, m + 1)
    w = np.exp(-(xs.astype(np.float64) ** 2) / (2.0 * s2))
    return xs, w / w.sum()


def rounded_gauss_pmf(s2):
    from math import erf, sqrt
    m = int(40 * np.sqrt(s2)) + 40
    xs = np.arange(-m, m + 1)
    cdf = lambda t: 0.5 * (1 + erf(t / sqrt(2 * s2)))
    return xs, np.array([cdf(x + 0.5) - cdf(x - 0.5) for x in xs])


def chi2_crit(k):
    return k * (1 - 2 / (9 * k) + Z_1E6 * np.sqrt(2 / (9 * k))) ** 3


def chi2(counts, xs, p, n):
    exp = p * n
    keep = exp >= 5
    obs = np.array([counts.get(int(x), 0) for x in xs], dtype=np.float64)
    o = np.append(obs[keep], n - obs[keep].sum())
    e = np.append(exp[keep], n - exp[keep].sum())
    if e[-1] < 5:  # pool a tiny tail bin into the last kept one
        o[-2] += o[-1]
        e[-2] += e[-1]
        o, e = o[:-1], e[:-1]
    stat = float(((o - e) ** 2 / e).sum())
    return stat, chi2_crit(len(o) - 1)


def main():
    prog = sys.argv[1]
    failures = 0
    for s2, n in ((1, 200000), (3, 200000), (40, 200000), (1000, 200000), (250000, 100000)):
        r = subprocess.run([prog, "--histogram", str(s2), str(n)], capture_output=True, text=True,
                           check=True)
        counts, outside = {}, None
        for line in r.stdout.split("\n"):
            if line.startswith("outside"):
                outside = int(line.split()[1])
            elif line:
                x, c = line.split()
                counts[int(x)] = int(c)
        assert outside == 0, f"s2 {s2}: {outside} draws beyond 12 standard deviations"
        assert sum(counts.values()) == n
        xs, p = pmf(s2)
        mean_p, var_p = float((xs * p).sum()), float((xs * xs * p).sum())
        ks = np.array(list(counts.keys()), dtype=np.float64)
        cs = np.array(list(counts.values()), dtype=np.float64)
        mean = float((ks * cs).sum() / n)
        var = float((ks * ks * cs).sum() / n - mean * mean)
        ok_m = abs(mean - mean_p) <= 5 * np.sqrt(var_p / n)
        ok_v = abs(var - var_p) <= 5 * var_p * np.sqrt(2.0 / n)
        stat, crit = chi2(counts, xs, p, n)
        # control: a 5% larger variance must be rejected (the standard error of the variance
        # is 0.3% at n = 2e5, 0.45% at 1e5)
        xs2, p2 = pmf(s2 * 1.05)
        stat_w, crit_w = chi2(counts, xs2, p2, n)
        var_w = float((xs2 * xs2 * p2).sum())
        rej_w = stat_w > crit_w or abs(var - var_w) > 5 * var_w * np.sqrt(2.0 / n)
        print(f"s2 {s2}: n {n}, mean {mean:.4f} (pmf {mean_p:.4f}), variance {var:.4f} (pmf "
              f"{var_p:.4f}), chi2 {stat:.1f} < {crit:.1f}; against s2*1.05: {stat_w:.1f} "
              f"(critical {crit_w:.1f}), variance {var_w:.4f}: rejected {rej_w}")
        if not (ok_m and ok_v and stat < crit and rej_w):
            print(f"FAIL s2 {s2}")
            failures += 1
        if s2 == 1:
            xs3, p3 = rounded_gauss_pmf(1)
            stat_r, crit_r = chi2(counts, xs3, p3, n)
            print(f"  against a rounded continuous Gaussian: chi2 {stat_r:.1f} (must exceed "
                  f"{crit_r:.1f})")
            if not stat_r > crit_r:
                failures += 1
    print("test_dgauss.py:", "FAILED" if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
