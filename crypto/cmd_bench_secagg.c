/*
 * cmd_bench_secagg.c: `condenser bench secagg`, the secure-aggregation benchmark.
 *
 * Runs one complete SecAgg+ round in this process with N clients and D values: every client
 * really advertises, shares and answers the unmask request, and a fraction P of them drops out
 * after sharing (the expensive case for the server, as in Bonawitz et al.'s measurements). It
 * reports, side by side:
 *   - the mask generators' keystream rate (AES-256-CTR and ChaCha20 through OpenSSL, ChaCha20
 *     through libsodium), which decided CND_PRG_MASK;
 *   - client time: fixed-point encoding of D floats, share_keys, and masking (median over a few
 *     clients that mask for real, single-threaded), and answering the unmask request (which
 *     checks min_survivors signatures on the survivor sets);
 *   - server time: adding the masked vectors as they arrive, and unmasking (finish) with
 *     --threads workers, split into rebuilding secrets + key agreement and mask expansion;
 *   - wire size of a masked vector against the packed plaintext at the ring width.
 *
 * Simulating many clients cheaply: apart from the timed sample, survivors mask with
 * cnd_sa_client_mask_sim, which leaves out the pairwise masks between two simulated survivors.
 * Those masks cancel in the server's sum anyway, so the server receives exactly the sum it would
 * receive in a real round and does exactly the same work; only the simulation is faster. The
 * server's sum is checked against the plain sum of the inputs at the end.
 *
 * --regions R simulates the two-level design of docs/hierarchical-aggregation.md: the N clients
 * are split into R regions of N/R, each a complete SecAgg+ round under its regional aggregator
 * (run one after the other here; on separate machines they run side by side), and the
 * coordinator adds the R regional sums. It reports the busiest regional aggregator's figures,
 * the coordinator's combine time and bytes received, and checks the combined sum exactly.
 */
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "fixedpoint.h"
#include "progress.h"
#include "prg.h"
#include "rng.h"
#include "secagg_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint32_t n, len, bits;
    cnd_secagg_client_t **cl;
    cnd_buf_t *in;       /* per client: the message it receives next */
    cnd_buf_t *out;      /* per client: the message it sends */
    uint32_t *x;         /* one input vector per worker */
    const uint32_t *idx; /* clients handled by this parallel step */
    const uint8_t *skip;
    uint8_t seed[32];
    int phase;
} s_sim_t;

/* CPU seconds used by the whole process (all threads): on a shared machine the wall clock
 * includes waiting for a core, CPU time does not. */
static double s_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int s_cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double s_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, s_cmp_dbl);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0;
}

/* Input vector of client u: ring elements below 2^bits from a keystream (cheap, reproducible). */
static int s_input(uint32_t *x, cnd_prg_t *g, const uint8_t seed[32], uint32_t u, uint32_t len,
                   uint32_t bits)
{
    uint8_t s[32];
    memcpy(s, seed, 32);
    cnd_st_le32(s, u);
    memset(x, 0, (size_t)len * 4);
    int rc = cnd_prg_mask_add(g, x, 0, len, s, 32, 0);
    uint32_t m = bits == 32 ? 0xffffffffu : ((1u << bits) - 1);
    for (uint32_t i = 0; i < len; i++) x[i] &= m;
    return rc;
}

static int s_sim_step(void *arg, size_t i, unsigned worker)
{
    s_sim_t *s = arg;
    uint32_t u = s->idx[i];
    cnd_buf_t *o = &s->out[u];
    o->len = 0;
    switch (s->phase) {
    case 1: return cnd_secagg_client_advertise(s->cl[u], o);
    case 2: return cnd_secagg_client_share_keys(s->cl[u], o, s->in[u].data, s->in[u].len);
    case 3: {
        uint32_t *x = s->x + (size_t)worker * s->len;
        cnd_prg_t *g = cnd_prg_new(CND_PRG_MASK);
        int rc = g ? s_input(x, g, s->seed, u, s->len, s->bits) : CND_ECRYPTO;
        cnd_prg_destroy(&g);
        if (!rc) rc = cnd_sa_client_mask_sim(s->cl[u], o, s->in[u].data, s->in[u].len, x, s->skip);
        return rc;
    }
    case 4: return cnd_secagg_client_consistency(s->cl[u], o, s->in[u].data, s->in[u].len);
    case 5: return cnd_secagg_client_unmask(s->cl[u], o, s->in[u].data, s->in[u].len);
    }
    return CND_EINVAL;
}

/* Keystream rate of one generator in GB/s (best of 5 over 16 MiB). */
static double s_prg_rate(cnd_prg_alg_t alg)
{
    const size_t n = (size_t)16 << 20;
    uint8_t *buf = malloc(n), seed[32] = {7};
    cnd_prg_t *g = cnd_prg_new(alg);
    double best = 1e30;
    for (int r = 0; g && buf && r < 5; r++) {
        double t = cnd_now();
        if (cnd_prg_keystream(g, buf, n, 0, seed)) break;
        t = cnd_now() - t;
        if (t < best) best = t;
    }
    cnd_prg_destroy(&g);
    free(buf);
    return best < 1e30 ? (double)n / best / 1e9 : 0;
}

/* One benchmark round: its parameters, the simulated clients and server, the inputs' plain sum
 * and every measurement the report prints. The phases below fill it in order. */
typedef struct {
    long values, threads;
    double dropout;
    cnd_fxp_params_t fp;
    cnd_fxp_layout_t lay;
    cnd_secagg_params_t p;
    uint32_t n, n_drop;
    uint32_t ns; /* clients whose share_keys and masking are timed one by one */
    uint32_t na; /* survivors, listed in idx[0..na) from the consistency phase on */
    s_sim_t sim;
    cnd_identity_t **ids;
    cnd_secagg_member_t *roster;
    uint32_t *idx;
    uint8_t *skip, *dropped;
    uint32_t *expect, *sum;            /* plain sum of the survivors' inputs; the server's result */
    double *t_mask, *t_share, *c_mask; /* per timed client */
    cnd_secagg_server_t *srv;
    cnd_prg_t *g;
    float *upd;
    cnd_rng_t rng; /* the float update, then who drops */
    cnd_progress_t prog;
    /* measurements (seconds, bytes) */
    double rate[3]; /* keystream GB/s: AES-256-CTR/OpenSSL, ChaCha20/OpenSSL, ChaCha20/sodium */
    double t_enc, srv_t, add_t, t_unmask_client, unmask_t, unmask_cpu, keys_t, masks_t;
    size_t share_bytes, keys_bytes, masked_bytes, unmask_req_bytes, unmask_bytes;
} s_bench_t;

/* Ring width from the value range and the number of clients, the SecAgg+ parameters and the
 * number of dropouts, all checked before anything is allocated. */
static int s_setup_params(s_bench_t *b, long clients, long value_bits, long degree,
                          double fail_prob)
{
    b->n = (uint32_t)clients;
    b->fp = (cnd_fxp_params_t){(uint32_t)b->values, b->n, (uint32_t)value_bits, 1.0f, 0, 1000};
    int rc = cnd_fxp_layout(&b->lay, &b->fp);
    if (rc) return rc;
    cnd_secagg_params_t *p = &b->p;
    p->round_id = 1;
    randombytes_buf(p->round_seed, sizeof p->round_seed);
    p->n = b->n;
    p->len = b->lay.len;
    p->bits = b->lay.bits;
    p->degree = (uint32_t)degree;
    if (!degree)
        p->degree = b->dropout > 0 ? cnd_secagg_degree_for_dropout(b->n, b->dropout, fail_prob)
                                   : cnd_secagg_default_degree(b->n);
    if ((rc = cnd_secagg_params_fill(p))) return rc;
    b->n_drop = (uint32_t)lround(b->dropout * b->n);
    if (b->n - b->n_drop < p->min_survivors)
        return cnd_errf(CND_EINVAL, "--dropout %.2f leaves %u clients, fewer than %u", b->dropout,
                        b->n - b->n_drop, p->min_survivors);
    return 0;
}

/* Buffers, one identity and one client per participant, and the server. */
static int s_setup_round(s_bench_t *b, long samples)
{
    const uint32_t n = b->n;
    const cnd_secagg_params_t *p = &b->p;
    b->sim.n = n;
    b->sim.len = p->len;
    b->sim.bits = p->bits;
    randombytes_buf(b->sim.seed, sizeof b->sim.seed);
    b->ids = calloc(n, sizeof *b->ids);
    b->roster = calloc(n, sizeof *b->roster);
    b->sim.cl = calloc(n, sizeof *b->sim.cl);
    b->sim.in = calloc(n, sizeof *b->sim.in);
    b->sim.out = calloc(n, sizeof *b->sim.out);
    b->idx = malloc((size_t)n * sizeof *b->idx);
    b->skip = calloc(n, 1);
    b->dropped = calloc(n, 1);
    b->expect = calloc(p->len, 4);
    b->sum = malloc((size_t)p->len * 4);
    b->sim.x = malloc((size_t)b->threads * p->len * 4);
    b->t_mask = calloc((size_t)samples, sizeof(double));
    b->t_share = calloc((size_t)samples, sizeof(double));
    b->c_mask = calloc((size_t)samples, sizeof(double));
    b->g = cnd_prg_new(CND_PRG_MASK);
    b->upd = malloc((size_t)b->values * sizeof *b->upd);
    if (!b->ids || !b->roster || !b->sim.cl || !b->sim.in || !b->sim.out || !b->idx || !b->skip ||
        !b->dropped || !b->expect || !b->sum || !b->sim.x || !b->t_mask || !b->t_share ||
        !b->c_mask || !b->g || !b->upd)
        return cnd_errf(CND_ENOMEM, "out of memory for %u clients x %ld values", n, b->values);
    int rc;
    for (uint32_t u = 0; u < n; u++) {
        uint8_t s[32] = {0};
        cnd_st_le32(s, u + 1);
        if ((rc = cnd_identity_from_seed(&b->ids[u], s))) return rc;
        memcpy(b->roster[u].id_pk, cnd_identity_pk(b->ids[u]), 32);
        b->idx[u] = u;
    }
    for (uint32_t u = 0; u < n; u++)
        if ((rc = cnd_secagg_client_new(&b->sim.cl[u], p, u, b->ids[u], b->roster))) return rc;
    return cnd_secagg_server_new(&b->srv, p, b->roster, (unsigned)b->threads);
}

/* Client-side encoding of a float update (timed once; the masked inputs below are random ring
 * elements of the same width so that the sum can be checked exactly). */
static int s_encode_update(s_bench_t *b)
{
    cnd_rng_seed(&b->rng, 11);
    for (long i = 0; i < b->values; i++) b->upd[i] = (float)(cnd_rng_normal(&b->rng) * 0.1);
    uint32_t *enc = b->sim.x;
    b->t_enc = cnd_now();
    int rc = cnd_fxp_encode(enc, NULL, &b->fp, &b->lay, b->upd, 500);
    b->t_enc = cnd_now() - b->t_enc;
    return rc;
}

/* Phase 1: adverts. */
static int s_phase_adverts(s_bench_t *b)
{
    b->sim.idx = b->idx;
    b->sim.phase = 1;
    int rc = cnd_sa_parallel(b->n, (unsigned)b->threads, 1, s_sim_step, &b->sim);
    if (rc) return rc;
    double t = cnd_now();
    for (uint32_t u = 0; u < b->n && !rc; u++)
        rc = cnd_secagg_server_add_advert(b->srv, u, b->sim.out[u].data, b->sim.out[u].len);
    if (!rc) rc = cnd_secagg_server_end_adverts(b->srv);
    b->srv_t += cnd_now() - t;
    if (!rc) cnd_progress_update(&b->prog, b->n, "adverts");
    return rc;
}

/* Phase 2: share keys. The first `ns` clients are timed one by one. */
static int s_phase_shares(s_bench_t *b, long samples)
{
    s_sim_t *sim = &b->sim;
    const uint32_t n = b->n;
    int rc = 0;
    double t = cnd_now();
    for (uint32_t u = 0; u < n && !rc; u++) {
        sim->in[u].len = 0;
        rc = cnd_secagg_server_keys_msg(b->srv, &sim->in[u], u);
    }
    b->srv_t += cnd_now() - t;
    b->ns = (uint32_t)(samples < n - b->n_drop ? samples : n - b->n_drop);
    sim->phase = 2;
    for (uint32_t i = 0; i < b->ns && !rc; i++) {
        t = cnd_now();
        rc = s_sim_step(sim, i, 0);
        b->t_share[i] = cnd_now() - t;
    }
    sim->idx = b->idx + b->ns;
    if (!rc) rc = cnd_sa_parallel(n - b->ns, (unsigned)b->threads, 1, s_sim_step, sim);
    sim->idx = b->idx;
    t = cnd_now();
    for (uint32_t u = 0; u < n && !rc; u++)
        rc = cnd_secagg_server_add_shares(b->srv, u, sim->out[u].data, sim->out[u].len);
    if (!rc) rc = cnd_secagg_server_end_shares(b->srv);
    b->srv_t += cnd_now() - t;
    if (rc) return rc;
    b->share_bytes = sim->out[0].len;
    b->keys_bytes = sim->in[0].len;
    cnd_progress_update(&b->prog, 2ull * n, "shares");
    return 0;
}

/* Who drops: n_drop random clients outside the timed sample; the survivors among the others
 * are simulated (skip). */
static void s_pick_dropouts(s_bench_t *b)
{
    for (uint32_t c = 0; c < b->n_drop;) {
        uint32_t u = b->ns + (uint32_t)cnd_rng_below(&b->rng, b->n - b->ns);
        if (!b->dropped[u]) {
            b->dropped[u] = 1;
            c++;
        }
    }
    for (uint32_t u = b->ns; u < b->n; u++) b->skip[u] = !b->dropped[u];
}

/* Phase 3, the timed sample: full masking by each client, added by the server on arrival. */
static int s_masked_timed(s_bench_t *b)
{
    s_sim_t *sim = &b->sim;
    int rc = 0;
    for (uint32_t u = 0; u < b->ns && !rc; u++) {
        uint32_t *x = sim->x;
        if ((rc = s_input(x, b->g, sim->seed, u, b->p.len, b->p.bits))) break;
        for (uint32_t i = 0; i < b->p.len; i++) b->expect[i] += x[i];
        sim->out[u].len = 0;
        double t = cnd_now();
        double c0 = s_cpu();
        rc = cnd_secagg_client_mask(sim->cl[u], &sim->out[u], sim->in[u].data, sim->in[u].len, x);
        b->c_mask[u] = s_cpu() - c0;
        b->t_mask[u] = cnd_now() - t;
        if (rc) break;
        b->masked_bytes = sim->out[u].len;
        t = cnd_now();
        rc = cnd_secagg_server_add_masked(b->srv, u, sim->out[u].data, sim->out[u].len);
        b->add_t += cnd_now() - t;
        cnd_buf_free(&sim->out[u]);
    }
    return rc;
}

/* Phase 3, the simulated rest: surviving clients mask in parallel batches, the server adds
 * each vector as it arrives. */
static int s_masked_simulated(s_bench_t *b, int rc)
{
    s_sim_t *sim = &b->sim;
    const uint32_t n = b->n;
    uint32_t *batch = malloc((size_t)n * sizeof *batch), nb = 0;
    if (!batch && !rc) rc = cnd_errf(CND_ENOMEM, "out of memory");
    sim->phase = 3;
    sim->skip = b->skip;
    for (uint32_t u = b->ns; u < n && !rc; u++) {
        if (!b->dropped[u]) batch[nb++] = u;
        if (nb == (uint32_t)b->threads * 2 || (u == n - 1 && nb)) {
            sim->idx = batch;
            if ((rc = cnd_sa_parallel(nb, (unsigned)b->threads, 1, s_sim_step, sim))) break;
            for (uint32_t i = 0; i < nb && !rc; i++) {
                uint32_t v = batch[i];
                double t = cnd_now();
                rc = cnd_secagg_server_add_masked(b->srv, v, sim->out[v].data, sim->out[v].len);
                b->add_t += cnd_now() - t;
                cnd_buf_free(&sim->out[v]);
                if (!rc) rc = s_input(sim->x, b->g, sim->seed, v, b->p.len, b->p.bits);
                for (uint32_t j = 0; j < b->p.len; j++) b->expect[j] += sim->x[j];
            }
            cnd_progress_update(&b->prog, 2ull * n + u, "masked inputs");
            nb = 0;
        }
    }
    free(batch);
    sim->idx = b->idx;
    return rc;
}

/* Phase 3: masked inputs. Timed sample first (full masking), then the simulated rest. */
static int s_phase_masked(s_bench_t *b)
{
    int rc = 0;
    double t = cnd_now();
    for (uint32_t u = 0; u < b->n && !rc; u++) {
        b->sim.in[u].len = 0;
        if (!b->dropped[u]) rc = cnd_secagg_server_shares_msg(b->srv, &b->sim.in[u], u);
    }
    b->srv_t += cnd_now() - t;
    if (!rc) rc = s_masked_timed(b);
    rc = s_masked_simulated(b, rc);
    t = cnd_now();
    if (!rc) rc = cnd_secagg_server_end_masked(b->srv);
    b->srv_t += cnd_now() - t + b->add_t;
    return rc;
}

/* Phase 4: consistency (every survivor signs the survivor sets), then the unmask requests. */
static int s_phase_consistency(s_bench_t *b)
{
    s_sim_t *sim = &b->sim;
    uint32_t *idx = b->idx;
    int rc = 0;
    b->na = 0;
    double t = cnd_now();
    for (uint32_t u = 0; u < b->n && !rc; u++) {
        sim->in[u].len = 0;
        if (!b->dropped[u]) {
            idx[b->na++] = u;
            rc = cnd_secagg_server_consistency_msg(b->srv, &sim->in[u], u);
        }
    }
    b->srv_t += cnd_now() - t;
    sim->phase = 4;
    if (!rc) rc = cnd_sa_parallel(b->na, (unsigned)b->threads, 1, s_sim_step, sim);
    t = cnd_now();
    for (uint32_t i = 0; i < b->na && !rc; i++)
        rc = cnd_secagg_server_add_consistency(b->srv, idx[i], sim->out[idx[i]].data,
                                               sim->out[idx[i]].len);
    if (!rc) rc = cnd_secagg_server_end_consistency(b->srv);
    for (uint32_t i = 0; i < b->na && !rc; i++) {
        sim->in[idx[i]].len = 0;
        rc = cnd_secagg_server_unmask_msg(b->srv, &sim->in[idx[i]], idx[i]);
    }
    b->srv_t += cnd_now() - t;
    b->unmask_req_bytes = b->na ? sim->in[idx[0]].len : 0;
    return rc;
}

/* Phase 5: unmask; the first survivor is timed on its own, then the server finishes (rc carries
 * an earlier phase's failure: nothing runs then). */
static int s_phase_unmask(s_bench_t *b, int rc)
{
    s_sim_t *sim = &b->sim;
    uint32_t *idx = b->idx;
    sim->phase = 5;
    b->t_unmask_client = cnd_now();
    if (!rc) rc = s_sim_step(sim, 0, 0);
    b->t_unmask_client = cnd_now() - b->t_unmask_client;
    sim->idx = idx + 1;
    if (!rc) rc = cnd_sa_parallel(b->na - 1, (unsigned)b->threads, 1, s_sim_step, sim);
    sim->idx = idx;
    b->unmask_bytes = sim->out[idx[0]].len;
    double t = cnd_now();
    for (uint32_t i = 0; i < b->na && !rc; i++)
        rc = cnd_secagg_server_add_unmask(b->srv, idx[i], sim->out[idx[i]].data,
                                          sim->out[idx[i]].len);
    b->unmask_t = cnd_now();
    b->unmask_cpu = s_cpu();
    if (!rc) rc = cnd_secagg_server_finish(b->srv, b->sum);
    b->unmask_t = cnd_now() - b->unmask_t;
    b->unmask_cpu = s_cpu() - b->unmask_cpu;
    b->srv_t += cnd_now() - t;
    return rc;
}

/* The server's sum against the plain sum of the survivors' inputs. */
static int s_check_sum(const s_bench_t *b)
{
    uint32_t m = b->p.bits == 32 ? 0xffffffffu : ((1u << b->p.bits) - 1);
    for (uint32_t i = 0; i < b->p.len; i++)
        if ((b->expect[i] & m) != b->sum[i])
            return cnd_errf(CND_ECORRUPT, "benchmark round produced a wrong sum at element %u", i);
    return 0;
}

/* Medians and derived figures the two reports print. */
typedef struct {
    double mask_med, share_med, mask_cpu, load;
    size_t packed;
    double ratio;
} s_summary_t;

static void s_summarize(s_summary_t *s, s_bench_t *b)
{
    cnd_secagg_server_finish_times(b->srv, &b->keys_t, &b->masks_t);
    s->mask_med = s_median(b->t_mask, b->ns);
    s->share_med = s_median(b->t_share, b->ns);
    s->mask_cpu = s_median(b->c_mask, b->ns);
    double load[1] = {0};
    if (getloadavg(load, 1) != 1) load[0] = -1;
    s->load = load[0];
    s->packed = cnd_ring_packed_bytes(b->p.len, b->p.bits);
    s->ratio = (double)b->masked_bytes / (double)s->packed;
}

static void s_print_json(const s_bench_t *b, const s_summary_t *s)
{
    const cnd_secagg_params_t *p = &b->p;
    printf("{\"clients\": %u, \"values\": %ld, \"dropout\": %.3f, \"dropped\": %u, ", b->n,
           b->values, b->dropout, b->n_drop);
    printf("\"threads\": %ld, \"degree\": %u, \"threshold\": %u, \"min_survivors\": %u, "
           "\"ring_bits\": %u, ",
           b->threads, p->degree, p->threshold, p->min_survivors, p->bits);
    printf("\"prg_gbps\": {\"aes256ctr_openssl\": %.2f, \"chacha20_openssl\": %.2f, "
           "\"chacha20_sodium\": %.2f}, ",
           b->rate[0], b->rate[1], b->rate[2]);
    printf("\"client_encode_s\": %.6f, \"client_share_keys_s\": %.6f, \"client_mask_s\": %.6f, "
           "\"client_mask_cpu_s\": %.6f, \"client_unmask_s\": %.6f, ",
           b->t_enc, s->share_med, s->mask_med, s->mask_cpu, b->t_unmask_client);
    printf("\"server_add_masked_s\": %.6f, \"server_unmask_s\": %.6f, "
           "\"server_unmask_cpu_s\": %.6f, \"server_unmask_keys_s\": %.6f, "
           "\"server_unmask_masks_s\": %.6f, \"server_total_s\": %.6f, ",
           b->add_t, b->unmask_t, b->unmask_cpu, b->keys_t, b->masks_t, b->srv_t);
    printf("\"masked_bytes\": %zu, \"packed_plaintext_bytes\": %zu, \"wire_ratio\": %.5f, "
           "\"advert_bytes\": %d, \"shares_bytes\": %zu, \"keys_bytes\": %zu, "
           "\"unmask_req_bytes\": %zu, \"unmask_bytes\": %zu, ",
           b->masked_bytes, s->packed, s->ratio, S_SA_ADVERT_BYTES, b->share_bytes, b->keys_bytes,
           b->unmask_req_bytes, b->unmask_bytes);
    printf("\"load_avg\": %.2f, \"sum_ok\": true}\n", s->load);
}

static void s_print_text(const s_bench_t *b, const s_summary_t *s)
{
    const cnd_secagg_params_t *p = &b->p;
    printf("secure aggregation: %u clients x %ld values, %u dropped after sharing (%.0f%%), "
           "degree %u (k = %u), threshold %u, ring 2^%u\n",
           b->n, b->values, b->n_drop, b->dropout * 100, p->degree, p->degree + 1, p->threshold,
           p->bits);
    printf("  mask generator      AES-256-CTR/OpenSSL %.2f GB/s, ChaCha20/OpenSSL %.2f GB/s, "
           "ChaCha20/libsodium %.2f GB/s (using %s)\n",
           b->rate[0], b->rate[1], b->rate[2], cnd_prg_name(CND_PRG_MASK));
    printf("  client encode       %8.3f ms  (clip, weight, stochastic rounding of %ld floats)\n",
           b->t_enc * 1e3, b->values);
    printf("  client share keys   %8.3f ms  (median of %u)\n", s->share_med * 1e3, b->ns);
    printf("  client masking      %8.3f ms  (median of %u; %u pairwise masks + self mask; "
           "%.3f ms CPU)\n",
           s->mask_med * 1e3, b->ns, p->degree, s->mask_cpu * 1e3);
    printf("  client unmask       %8.3f ms  (checks %u signatures on the survivor sets)\n",
           b->t_unmask_client * 1e3, p->min_survivors);
    printf("  server add masked   %8.3f ms  (all %u vectors, streaming)\n", b->add_t * 1e3,
           b->n - b->n_drop);
    printf("  server unmask       %8.3f ms  (%ld threads: secrets + key agreement %.3f ms, "
           "mask expansion %.3f ms; %.3f s CPU)\n",
           b->unmask_t * 1e3, b->threads, b->keys_t * 1e3, b->masks_t * 1e3, b->unmask_cpu);
    printf("  server total        %8.3f ms  (all server calls of the round)\n", b->srv_t * 1e3);
    printf("  wire: masked vector %zu bytes, packed plaintext %zu bytes (%.4fx); per client "
           "also advert %d, shares %zu, keys received %zu, unmask request %zu, unmask %zu "
           "bytes\n",
           b->masked_bytes, s->packed, s->ratio, S_SA_ADVERT_BYTES, b->share_bytes, b->keys_bytes,
           b->unmask_req_bytes, b->unmask_bytes);
    printf("  sum check           exact (%u survivors); load average %.2f\n", b->n - b->n_drop,
           s->load);
}

static void s_bench_free(s_bench_t *b)
{
    if (b->sim.cl)
        for (uint32_t u = 0; u < b->n; u++) {
            cnd_secagg_client_destroy(&b->sim.cl[u]);
            cnd_buf_free(&b->sim.in[u]);
            cnd_buf_free(&b->sim.out[u]);
        }
    if (b->ids)
        for (uint32_t u = 0; u < b->n; u++) cnd_identity_destroy(&b->ids[u]);
    cnd_secagg_server_destroy(&b->srv);
    cnd_prg_destroy(&b->g);
    free(b->ids);
    free(b->roster);
    free(b->sim.cl);
    free(b->sim.in);
    free(b->sim.out);
    free(b->idx);
    free(b->skip);
    free(b->dropped);
    free(b->expect);
    free(b->sum);
    free(b->sim.x);
    free(b->t_mask);
    free(b->t_share);
    free(b->c_mask);
    free(b->upd);
}

/* Runs the whole round, phase by phase, and checks its sum. */
static int s_run_round(s_bench_t *b, long samples)
{
    int rc;
    if ((rc = s_setup_round(b, samples)) || (rc = s_encode_update(b)) ||
        (rc = s_phase_adverts(b)) || (rc = s_phase_shares(b, samples)))
        return rc;
    s_pick_dropouts(b);
    if ((rc = s_phase_masked(b))) return rc;
    rc = s_phase_consistency(b);
    rc = s_phase_unmask(b, rc);
    cnd_progress_end(&b->prog);
    if (rc) return rc;
    return s_check_sum(b);
}

/* The R regional rounds and the coordinator's combine (--regions). */
typedef struct {
    long regions;
    uint32_t m, len;
    uint64_t *total, *expect;            /* the coordinator's sum; the plain one */
    double combine_s, region_max_s;      /* coordinator add time; slowest regional server */
    double region_cpu_s, region_keys_mb; /* all regional unmasking CPU; adverts relayed per RA */
    size_t bytes_in;                     /* regional sums and signatures, at the coordinator */
    s_bench_t last;                      /* the last region's round, for its parameters */
} s_regions_t;

/* One regional round; its sum added into the coordinator's total. */
static int s_region(s_regions_t *g, const s_bench_t *tmpl, long value_bits, long degree,
                    double fail_prob, long samples)
{
    s_bench_t *b = &g->last;
    s_bench_free(b);
    memset(b, 0, sizeof *b);
    b->values = tmpl->values;
    b->threads = tmpl->threads;
    b->dropout = tmpl->dropout;
    int rc = s_setup_params(b, (long)g->m, value_bits, degree, fail_prob);
    if (rc) return rc;
    cnd_progress_begin(&b->prog, "secagg region", 3ull * b->n, "client steps");
    if ((rc = s_run_round(b, samples))) return rc;
    s_summary_t sm;
    s_summarize(&sm, b);
    if (!g->total) {
        g->len = b->p.len;
        g->total = calloc(g->len, sizeof *g->total);
        g->expect = calloc(g->len, sizeof *g->expect);
        if (!g->total || !g->expect) return cnd_errf(CND_ENOMEM, "regions: out of memory");
    }
    uint32_t mask = b->p.bits == 32 ? 0xffffffffu : ((1u << b->p.bits) - 1);
    double t = s_cpu();
    for (uint32_t i = 0; i < g->len; i++) g->total[i] += b->sum[i];
    g->combine_s += s_cpu() - t;
    for (uint32_t i = 0; i < g->len; i++) g->expect[i] += b->expect[i] & mask;
    if (b->srv_t > g->region_max_s) g->region_max_s = b->srv_t;
    g->region_cpu_s += b->unmask_cpu;
    g->region_keys_mb = (double)b->keys_bytes * b->n / 1e6;
    g->bytes_in += sm.packed + (size_t)b->p.min_survivors * 64;
    return 0;
}

static int s_run_regions(s_regions_t *g, const s_bench_t *tmpl, long clients, long value_bits,
                         long degree, double fail_prob, long samples, int json)
{
    if (clients % g->regions || clients / g->regions < 3)
        return cnd_errf(CND_EINVAL,
                        "--regions %ld: --clients %ld must split into regions of at least 3 "
                        "equal parts",
                        g->regions, clients);
    g->m = (uint32_t)(clients / g->regions);
    int rc = 0;
    for (long r = 0; r < g->regions && !rc; r++)
        rc = s_region(g, tmpl, value_bits, degree, fail_prob, samples);
    for (uint32_t i = 0; !rc && i < g->len; i++)
        if (g->total[i] != g->expect[i])
            rc = cnd_errf(CND_ECORRUPT, "regions: wrong combined sum at element %u", i);
    if (rc) return rc;
    const s_bench_t *b = &g->last;
    double flat_keys_mb = (double)S_SA_ADVERT_BYTES * (double)clients * (double)clients / 1e6;
    if (json)
        printf("{\"clients\": %ld, \"regions\": %ld, \"region_clients\": %u, \"values\": %ld, "
               "\"dropout\": %.3f, \"region_degree\": %u, \"region_ring_bits\": %u, "
               "\"region_server_max_s\": %.6f, \"region_unmask_cpu_total_s\": %.6f, "
               "\"coordinator_combine_cpu_s\": %.6f, \"coordinator_bytes_in\": %zu, "
               "\"adverts_relayed_per_aggregator_mb\": %.3f, \"adverts_relayed_flat_mb\": %.3f, "
               "\"sum_ok\": true}\n",
               clients, g->regions, g->m, b->values, b->dropout, b->p.degree, b->p.bits,
               g->region_max_s, g->region_cpu_s, g->combine_s, g->bytes_in, g->region_keys_mb,
               flat_keys_mb);
    else
        printf("two-level secure aggregation: %ld clients in %ld regions of %u, %ld values, "
               "%.0f%% dropout (region degree %u, ring 2^%u)\n"
               "  slowest regional aggregator  %8.3f ms  (all server calls of its round)\n"
               "  regional unmasking           %8.3f s CPU in all regions\n"
               "  coordinator combine          %8.3f ms CPU  (adding %ld regional sums)\n"
               "  coordinator bytes in         %zu bytes (regional sums and their signatures)\n"
               "  adverts relayed              %.3f MB per aggregator (flat round: %.3f MB)\n"
               "  sum check                    exact\n",
               clients, g->regions, g->m, b->values, b->dropout * 100, b->p.degree, b->p.bits,
               g->region_max_s * 1e3, g->region_cpu_s, g->combine_s * 1e3, g->regions, g->bytes_in,
               g->region_keys_mb, flat_keys_mb);
    return 0;
}

int cnd_cmd_bench_secagg(int argc, char **argv)
{
    long clients = 100, threads = 2, degree = 0, value_bits = 8, samples = 5, regions = 0;
    double fail_prob = 1e-6;
    int json = 0;
    s_bench_t b;
    memset(&b, 0, sizeof b);
    b.values = 100000;
    const cnd_opt_t opts[] = {
        {"clients", CND_OPT_INT, &clients, "N", "clients in the round (default 100)", 3,
         CND_SECAGG_MAX_CLIENTS},
        {"values", CND_OPT_INT, &b.values, "D", "values per update (default 100000)", 1, 1e8},
        {"dropout", CND_OPT_DBL, &b.dropout, "P",
         "fraction of clients dropping after sharing keys (default 0)", 0, 0.9},
        {"threads", CND_OPT_INT, &threads, "T", "server unmasking threads (default 2)", 1, 64},
        {"degree", CND_OPT_INT, &degree, "K",
         "neighbours per client (default: smallest even degree for which a round at this dropout "
         "fails with probability <= --fail-prob; 2*ceil(log2 N) without dropout)",
         0, 254},
        {"fail-prob", CND_OPT_DBL, &fail_prob, "F", "see --degree (default 1e-6)", 1e-12, 0.5},
        {"value-bits", CND_OPT_INT, &value_bits, "Q",
         "bits of an encoded coordinate; the ring width follows from Q and N (default 8)", 2, 24},
        {"samples", CND_OPT_INT, &samples, "S",
         "clients whose masking is timed for real (default 5)", 1, 1000},
        {"regions", CND_OPT_INT, &regions, "R",
         "two-level aggregation: R regional rounds of N/R clients and the coordinator's combine "
         "(docs/hierarchical-aggregation.md)",
         1, CND_SECAGG_MAX_CLIENTS},
        {"json", CND_OPT_FLAG, &json, NULL, "print one JSON object instead of text"},
        {0}};
    const cnd_cli_t cli = {
        "condenser bench secagg --clients N --values D --dropout P [--threads T] [--json]",
        "Runs one secure-aggregation round in this process and reports client masking time, "
        "server accumulation and unmasking time, mask-generator speeds and wire size. Survivors "
        "other than the timed sample are simulated cheaply without changing the server's input or "
        "work; the server's sum is checked exactly.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    b.threads = threads;
    if (regions) {
        s_regions_t g;
        memset(&g, 0, sizeof g);
        g.regions = regions;
        rc = s_run_regions(&g, &b, clients, value_bits, degree, fail_prob, samples, json);
        s_bench_free(&g.last);
        free(g.total);
        free(g.expect);
        return rc;
    }
    if ((rc = s_setup_params(&b, clients, value_bits, degree, fail_prob))) return rc;
    for (int a = 0; a < 3; a++) b.rate[a] = s_prg_rate((cnd_prg_alg_t)a);
    cnd_progress_begin(&b.prog, "secagg bench", 3ull * b.n, "client steps");
    if (!(rc = s_run_round(&b, samples))) {
        s_summary_t s;
        s_summarize(&s, &b);
        if (json)
            s_print_json(&b, &s);
        else
            s_print_text(&b, &s);
    }
    cnd_progress_end(&b.prog);
    s_bench_free(&b);
    return rc;
}
