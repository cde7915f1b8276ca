/*
 * dp_accountant.c: RDP of the Poisson-sampled Gaussian mechanism and its conversion to
 * (epsilon, delta) (dp_accountant.h states the formulas and their sources).
 *
 * Everything is summed in log space: a term of A_alpha can reach exp(alpha^2 / (2 sigma^2)),
 * beyond a double for alpha = 512 and sigma < 8, while the terms that matter for small q are
 * below 1e-300. A series stops once its terms, past the peak, fall 40 nats below the sum
 * (1e-17 relative) or after CND_DP_MAX_TERMS terms (the result is then +inf: no claim).
 */
#include "dp_accountant.h"

#include <math.h>

#define CND_DP_MAX_TERMS 200000

void cnd_dp_default_orders(double *out)
{
    size_t n = 0;
    for (int x = 1; x < 100; x++) out[n++] = 1.0 + x / 10.0;
    for (int a = 11; a <= 64; a++) out[n++] = a;
    out[n++] = 128;
    out[n++] = 256;
    out[n++] = 512;
}

/* log(exp(a) + exp(b)) */
static double s_log_add(double a, double b)
{
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    double hi = a > b ? a : b, lo = a > b ? b : a;
    return hi + log1p(exp(lo - hi));
}

/* log(exp(a) - exp(b)) for a >= b; -inf when they are equal. */
static double s_log_sub(double a, double b)
{
    if (b == -INFINITY) return a;
    if (b >= a) return -INFINITY;
    return a + log1p(-exp(b - a));
}

/* log(erfc(x)): erfc itself for x < 20, else its asymptotic series
 * erfc(x) = exp(-x^2) / (x sqrt(pi)) (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6) + 105/(16x^8) ...),
 * whose first omitted term is below 3e-12 relative at x = 20. */
static double s_log_erfc(double x)
{
    if (x < 20.0) return log(erfc(x));
    double r = 1.0 / (x * x);
    double s =
        1.0 - r / 2.0 + 3.0 * r * r / 4.0 - 15.0 * r * r * r / 8.0 + 105.0 * r * r * r * r / 16.0;
    return -x * x - log(x) - 0.5 * log(M_PI) + log(s);
}

/* Integer alpha >= 2: the binomial expansion. */
static double s_log_a_int(double q, double sigma, long alpha)
{
    double lq = log(q), l1q = log1p(-q), s2 = 2.0 * sigma * sigma, acc = -INFINITY;
    for (long k = 0; k <= alpha; k++) {
        double lbin =
            lgamma((double)alpha + 1) - lgamma((double)k + 1) - lgamma((double)(alpha - k) + 1);
        double t = lbin + (double)k * lq + (double)(alpha - k) * l1q +
                   ((double)k * (double)k - (double)k) / s2;
        acc = s_log_add(acc, t);
    }
    return acc;
}

/* Fractional alpha: A = A0 + A1 with z0 = sigma^2 log(1/q - 1) + 1/2 splitting the integral,
 *   A0 = sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i)/(2 sigma^2)) erfc((i - z0)/(sqrt2
 * s))/2 A1 = sum_i C(alpha, i) q^(alpha-i) (1-q)^i exp((j^2 - j)/(2 sigma^2)) erfc((z0 - j)/(sqrt2
 * s))/2 with j = alpha - i. Binomial coefficients of a fractional alpha change sign once i > alpha:
 * terms are added or subtracted by that sign. */
static double s_log_a_frac(double q, double sigma, double alpha)
{
    double a0 = -INFINITY, a1 = -INFINITY, s2 = 2.0 * sigma * sigma, rt = sqrt(2.0) * sigma;
    double z0 = sigma * sigma * log(1.0 / q - 1.0) + 0.5, lq = log(q), l1q = log1p(-q);
    double lcoef = 0.0; /* log |C(alpha, i)| */
    int sign = 1;
    for (long i = 0; i < CND_DP_MAX_TERMS; i++) {
        double di = (double)i, j = alpha - di;
        double lt0 = lcoef + di * lq + j * l1q, lt1 = lcoef + j * lq + di * l1q;
        double ls0 = lt0 + (di * di - di) / s2 + log(0.5) + s_log_erfc((di - z0) / rt);
        double ls1 = lt1 + (j * j - j) / s2 + log(0.5) + s_log_erfc((z0 - j) / rt);
        if (sign > 0) {
            a0 = s_log_add(a0, ls0);
            a1 = s_log_add(a1, ls1);
        } else {
            a0 = s_log_sub(a0, ls0);
            a1 = s_log_sub(a1, ls1);
        }
        double big = ls0 > ls1 ? ls0 : ls1, sum = s_log_add(a0, a1);
        if (di > alpha + 1 && big < sum - 40.0) return sum;
        /* C(alpha, i+1) = C(alpha, i) (alpha - i) / (i + 1) */
        lcoef += log(fabs(alpha - di)) - log(di + 1.0);
        if (alpha - di < 0) sign = -sign;
    }
    return INFINITY;
}

double cnd_dp_log_a(double q, double sigma, double alpha)
{
    if (!(q >= 0 && q <= 1) || !(sigma > 0) || !(alpha > 1) || isinf(alpha)) return NAN;
    if (q == 0) return 0.0;
    if (q == 1) return alpha * (alpha - 1) / (2.0 * sigma * sigma); /* plain Gaussian */
    if (alpha == floor(alpha) && alpha < 1e6) return s_log_a_int(q, sigma, (long)alpha);
    return s_log_a_frac(q, sigma, alpha);
}

double cnd_dp_rdp(double q, double sigma, long steps, double alpha)
{
    double la = cnd_dp_log_a(q, sigma, alpha);
    if (steps == 0 || la == 0.0) return 0.0;
    return (double)steps * la / (alpha - 1.0);
}

static int s_check(const cnd_dp_params_t *p)
{
    if (!(p->q >= 0 && p->q <= 1))
        return cnd_errf(CND_EINVAL, "sampling rate %g is not in [0, 1]", p->q);
    if (!(p->sigma > 0) || isinf(p->sigma))
        return cnd_errf(CND_EINVAL, "noise multiplier %g is not a positive number", p->sigma);
    if (p->steps < 0) return cnd_errf(CND_EINVAL, "steps %ld is negative", p->steps);
    if (!(p->delta > 0 && p->delta < 1))
        return cnd_errf(CND_EINVAL, "delta %g is not in (0, 1)", p->delta);
    if (p->conversion != CND_DP_CONV_IMPROVED && p->conversion != CND_DP_CONV_STANDARD)
        return cnd_errf(CND_EINVAL, "unknown RDP conversion %d", (int)p->conversion);
    if (p->orders && p->n_orders == 0) return cnd_errf(CND_EINVAL, "empty list of RDP orders");
    for (size_t i = 0; p->orders && i < p->n_orders; i++)
        if (!(p->orders[i] > 1) || isinf(p->orders[i]))
            return cnd_errf(CND_EINVAL, "RDP order %g is not a finite number above 1",
                            p->orders[i]);
    return 0;
}

static int s_check_ddg(const cnd_dp_ddg_t *m)
{
    if (!(m->s2 >= 0.25) || isinf(m->s2))
        return cnd_errf(CND_EINVAL, "discrete Gaussian variance %g is below 1/4", m->s2);
    if (!(m->l2 >= 0) || isinf(m->l2) || !(m->l1 >= 0) || isinf(m->l1))
        return cnd_errf(CND_EINVAL, "sensitivities %g (L2), %g (L1) are not finite and >= 0", m->l2,
                        m->l1);
    if (m->parties < 1 || m->dim < 1)
        return cnd_errf(CND_EINVAL, "%u parties, %llu coordinates: both must be >= 1", m->parties,
                        (unsigned long long)m->dim);
    return 0;
}

double cnd_dp_ddg_rdp(const cnd_dp_ddg_t *m, double alpha)
{
    if (s_check_ddg(m) || !(alpha > 1)) return NAN;
    const double pi = 3.14159265358979323846;
    double n = m->parties, d = (double)m->dim, tau = 0;
    for (uint32_t k = 1; k < m->parties; k++)
        tau += exp(-2 * pi * pi * m->s2 * (double)k / (double)(k + 1));
    tau *= 10;
    double v = n * m->s2, l2s = m->l2 / sqrt(v), l1s = m->l1 / sqrt(v);
    double t1 = alpha / 2 * l2s * l2s + tau * d;
    double t2 = alpha / 2 * (l2s * l2s + 2 * l1s * tau + tau * tau * d);
    double t3 = alpha / 2 * (l2s + tau * sqrt(d)) * (l2s + tau * sqrt(d));
    return fmin(t1, fmin(t2, t3));
}

double cnd_dp_ddg_rounded_l2(double c, uint64_t dim, double beta)
{
    double d = (double)dim, b1 = c + sqrt(d);
    if (!(beta > 0 && beta < 1)) return b1;
    double b2 = sqrt(c * c + d / 4 + sqrt(2 * log(1 / beta)) * (c + sqrt(d) / 2));
    return fmin(b1, b2);
}

double cnd_dp_ddg_l1(double l2, uint64_t dim)
{
    return fmin(sqrt((double)dim) * l2, l2 * l2);
}

/* epsilon at one order from its composed RDP r. */
static double s_eps_at(double r, double a, double delta, cnd_dp_conversion_t conv)
{
    if (isnan(r) || isinf(r)) return INFINITY;
    if (conv == CND_DP_CONV_STANDARD) return r + log(1.0 / delta) / (a - 1.0);
    /* Balle et al. 2020: a slightly positive RDP with delta^2 above 1 - exp(-r) is already
     * (0, delta)-DP. */
    if (delta * delta + expm1(-r) >= 0) return 0.0;
    return r + log1p(-1.0 / a) - (log(delta) + log(a)) / (a - 1.0);
}

int cnd_dp_epsilon(const cnd_dp_params_t *p, double *eps, double *order)
{
    cnd_dp_segment_t one = {p->q, p->sigma, p->steps};
    return cnd_dp_epsilon_composed(p, &one, 1, eps, order);
}

int cnd_dp_epsilon_composed(const cnd_dp_params_t *p, const cnd_dp_segment_t *seg, size_t n_seg,
                            double *eps, double *order)
{
    if (n_seg == 0) return cnd_errf(CND_EINVAL, "no runs to compose");
    for (size_t s = 0; s < n_seg; s++) {
        if (seg[s].ddg.parties) {
            cnd_dp_params_t t = *p;
            t.q = 1, t.sigma = 1, t.steps = seg[s].steps;
            int rc = s_check(&t);
            if (!rc) rc = s_check_ddg(&seg[s].ddg);
            if (rc) return n_seg > 1 ? cnd_err_wrap(rc, "run %zu", s + 1) : rc;
            continue;
        }
        cnd_dp_params_t t = *p;
        t.q = seg[s].q;
        t.sigma = seg[s].sigma;
        t.steps = seg[s].steps;
        int rc = s_check(&t);
        if (rc) return n_seg > 1 ? cnd_err_wrap(rc, "run %zu", s + 1) : rc;
    }
    double def[CND_DP_DEFAULT_ORDERS];
    const double *ord = p->orders;
    size_t n = p->n_orders;
    if (!ord) {
        cnd_dp_default_orders(def);
        ord = def;
        n = CND_DP_DEFAULT_ORDERS;
    }
    double best = INFINITY, best_a = ord[0];
    for (size_t i = 0; i < n; i++) {
        double r = 0;
        for (size_t s = 0; s < n_seg; s++)
            r += seg[s].ddg.parties ? (double)seg[s].steps * cnd_dp_ddg_rdp(&seg[s].ddg, ord[i])
                                    : cnd_dp_rdp(seg[s].q, seg[s].sigma, seg[s].steps, ord[i]);
        double e = s_eps_at(r, ord[i], p->delta, p->conversion);
        if (e < best) {
            best = e;
            best_a = ord[i];
        }
    }
    *eps = best < 0 ? 0.0 : best;
    if (order) *order = best_a;
    return 0;
}

int cnd_dp_solve_noise(const cnd_dp_params_t *p, double target_eps, double *sigma, double *eps_out)
{
    if (!(target_eps > 0) || isinf(target_eps))
        return cnd_errf(CND_EINVAL, "target epsilon %g is not a positive number", target_eps);
    cnd_dp_params_t t = *p;
    t.sigma = 1.0;
    int rc = s_check(&t);
    if (rc) return rc;
    double e = 0, hi = 0.5, lo;
    do { /* double hi until it is private enough */
        hi *= 2.0;
        if (hi > 1e4)
            return cnd_errf(CND_ERANGE,
                            "no noise multiplier up to 1e4 reaches epsilon %g at delta %g "
                            "(sampling rate %g, %ld steps)",
                            target_eps, p->delta, p->q, p->steps);
        t.sigma = hi;
        if ((rc = cnd_dp_epsilon(&t, &e, NULL))) return rc;
    } while (e > target_eps);
    double e_hi = e;
    lo = hi / 2.0;
    if (hi == 1.0) lo = 1e-3;
    while (hi - lo > 1e-7 * hi) {
        double mid = 0.5 * (lo + hi);
        t.sigma = mid;
        if ((rc = cnd_dp_epsilon(&t, &e, NULL))) return rc;
        if (e > target_eps)
            lo = mid;
        else {
            hi = mid;
            e_hi = e;
        }
    }
    *sigma = hi;
    if (eps_out) *eps_out = e_hi;
    return 0;
}
