/*
 * dp_accountant.h: the privacy accountant of DP-SGD. Renyi differential privacy (RDP) of the
 * Poisson-sampled Gaussian mechanism, composed over steps and converted to (epsilon, delta).
 *
 * The mechanism: each step includes every record independently with probability q (Poisson
 * sampling), sums the records' gradients clipped to L2 norm C, and adds N(0, (sigma C)^2) to
 * every coordinate. sigma is the noise multiplier.
 *
 * RDP of one step at order alpha > 1 (Mironov, Talwar, Zhang 2019, "Renyi Differential Privacy
 * of the Sampled Gaussian Mechanism"): eps_step(alpha) = log(A_alpha) / (alpha - 1) with
 *   A_alpha = E_{z ~ N(0, sigma^2)} [((1 - q) + q exp((2z - 1) / (2 sigma^2)))^alpha].
 * Integer orders use the binomial expansion (their Section 3.3),
 *   A_alpha = sum_{k=0..alpha} C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2)),
 * fractional orders the two convergent series with erfc terms of their Section 3.3; both are
 * summed in log space (log-sum-exp, log erfc by its asymptotic series far in the tail), so
 * nothing overflows at large orders or small sigma. Over T steps RDP composes additively.
 *
 * Conversion to (epsilon, delta), minimised over the orders:
 *   improved (default; Balle, Barthe, Gaboardi, Hsu, Sato 2020, Theorem 21, the conversion
 *   TF-Privacy and Opacus use): eps = T eps_step(a) + log((a-1)/a) - (log(delta) + log(a))/(a-1)
 *   standard (Mironov 2017, Proposition 3): eps = T eps_step(a) + log(1/delta) / (a - 1).
 * The improved one is never larger. The default orders are 1.1, 1.2, ..., 10.9, 11, ..., 63,
 * 64, 128, 256, 512.
 *
 * Pure functions of their arguments; no allocation, thread-safe.
 */
#ifndef CND_DP_ACCOUNTANT_H
#define CND_DP_ACCOUNTANT_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CND_DP_CONV_IMPROVED = 0, /* Balle et al. 2020 (default) */
    CND_DP_CONV_STANDARD = 1, /* Mironov 2017 */
} cnd_dp_conversion_t;

#define CND_DP_DEFAULT_ORDERS 156 /* entries of the default order list */

typedef struct {
    double q;                       /* sampling rate in [0, 1] */
    double sigma;                   /* noise multiplier > 0 */
    long steps;                     /* compositions >= 0 */
    double delta;                   /* target delta in (0, 1) */
    cnd_dp_conversion_t conversion; /* how RDP becomes (epsilon, delta) */
    const double *orders;           /* NULL: the default list; else n_orders values > 1 */
    size_t n_orders;
} cnd_dp_params_t;

/* The default orders: writes CND_DP_DEFAULT_ORDERS values into out. */
void cnd_dp_default_orders(double *out);

/* log(A_alpha) of one step (above) for q in [0, 1], sigma > 0, alpha > 1. Returns it (>= 0,
 * possibly +inf when it overflows a double), or NaN for arguments outside those ranges. */
double cnd_dp_log_a(double q, double sigma, double alpha);

/* RDP of `steps` compositions at order alpha: steps * log(A_alpha) / (alpha - 1). */
double cnd_dp_rdp(double q, double sigma, long steps, double alpha);

/* (epsilon, delta)-DP of p: *eps (>= 0, +inf when no order gives a finite value) and the order
 * that attains it (*order, may be NULL). Returns 0, or CND_EINVAL naming the parameter out of
 * range (q, sigma, steps, delta, an order). */
CND_MUST_USE int cnd_dp_epsilon(const cnd_dp_params_t *p, double *eps, double *order);

/*
 * Distributed discrete Gaussian (Kairouz, Liu, Steinke 2021, "The Distributed Discrete Gaussian
 * Mechanism for Federated Learning with Secure Aggregation", Proposition 14 with the tau of
 * Theorem 1): `parties` parties each add N_Z(0, s2) to every coordinate of their integer vector
 * of dimension dim, and only the sum is released. If one party's vector changes by at most l2 in
 * L2 norm and l1 in L1 norm (integer units), the sum is (alpha, eps(alpha))-RDP with
 *   eps(alpha) = min{ alpha l2^2 / (2 n s2) + tau dim,
 *                     alpha/2 (l2^2 / (n s2) + 2 l1 tau / sqrt(n s2) + tau^2 dim),
 *                     alpha/2 (l2 / sqrt(n s2) + tau sqrt(dim))^2 },
 *   tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s2 k / (k + 1)),
 * n = parties, for s2 >= 1/4. tau bounds how far a sum of discrete Gaussians is from one
 * discrete Gaussian of the summed variance; it is negligible once s2 is a few units. More
 * parties than `parties` only add noise (the caller states the minimum that will be summed).
 */
typedef struct {
    double l2, l1;    /* sensitivities of the sum to one party, integer units (>= 0) */
    double s2;        /* each party's variance, integer units^2 (>= 1/4) */
    uint32_t parties; /* parties whose noise the sum is guaranteed to carry (>= 1) */
    uint64_t dim;     /* coordinates (>= 1) */
} cnd_dp_ddg_t;

/* RDP of one release at order alpha > 1 (above); NaN for parameters out of range. */
double cnd_dp_ddg_rdp(const cnd_dp_ddg_t *m, double alpha);

/* The L2 sensitivity after conditional randomized rounding (KLS 2021, Section 4.1): a vector of
 * L2 norm <= c (integer units) in `dim` coordinates, each rounded up or down at random, is
 * redrawn until its norm is at most
 *   min{ c + sqrt(dim), sqrt(c^2 + dim/4 + sqrt(2 log(1/beta)) (c + sqrt(dim)/2)) }
 * which a first draw meets with probability >= 1 - beta. Returns that bound. The L1 sensitivity
 * of an integer vector of L2 norm l2 is at most min(sqrt(dim) l2, l2^2) (|x| <= x^2 on Z). */
double cnd_dp_ddg_rounded_l2(double c, uint64_t dim, double beta);
double cnd_dp_ddg_l1(double l2, uint64_t dim);

/* One run for composition: a sampled Gaussian run (sampling rate, noise multiplier, steps),
 * or, when ddg.parties > 0, `steps` releases of a distributed discrete Gaussian sum (q and sigma
 * unused). */
typedef struct {
    double q, sigma;
    long steps;
    cnd_dp_ddg_t ddg;
} cnd_dp_segment_t;

/* (epsilon, delta)-DP of n runs on the same records one after the other (RDP adds up at each
 * order: the runs may differ in q, sigma and steps, as a site's jobs do), with p's delta,
 * conversion and orders (p's q, sigma and steps are ignored). Returns as cnd_dp_epsilon, the
 * detail naming the run at fault. */
CND_MUST_USE int cnd_dp_epsilon_composed(const cnd_dp_params_t *p, const cnd_dp_segment_t *seg,
                                         size_t n, double *eps, double *order);

/* The smallest noise multiplier (within a relative 1e-7, by bisection on the monotone
 * epsilon(sigma)) for which p with that sigma is (target_eps, p->delta)-DP; p->sigma is ignored.
 * *eps_out (may be NULL) receives the epsilon it reaches (<= target_eps). Returns 0, CND_EINVAL
 * for a parameter out of range, or CND_ERANGE when even sigma = 1e4 does not reach the target. */
CND_MUST_USE int cnd_dp_solve_noise(const cnd_dp_params_t *p, double target_eps, double *sigma,
                                    double *eps_out);

#endif
