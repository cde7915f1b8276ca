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

int cnd_cmd_bench_secagg(int argc, char **argv)
{
    long clients = 100, values = 100000, threads = 2, degree = 0, value_bits = 8, samples = 5;
    double dropout = 0, fail_prob = 1e-6;
    int json = 0;
    const cnd_opt_t opts[] = {
        {"clients", CND_OPT_INT, &clients, "N", "clients in the round (default 100)", 3,
         CND_SECAGG_MAX_CLIENTS},
        {"values", CND_OPT_INT, &values, "D", "values per update (default 100000)", 1, 1e8},
        {"dropout", CND_OPT_DBL, &dropout, "P",
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
    const uint32_t n = (uint32_t)clients;

    /* Ring width from the value range and the number of clients (checked before the round). */
    cnd_fxp_params_t fp = {(uint32_t)values, n, (uint32_t)value_bits, 1.0f, 0, 1000};
    cnd_fxp_layout_t lay;
    if ((rc = cnd_fxp_layout(&lay, &fp))) return rc;
    cnd_secagg_params_t p;
    memset(&p, 0, sizeof p);
    p.round_id = 1;
    randombytes_buf(p.round_seed, sizeof p.round_seed);
    p.n = n;
    p.len = lay.len;
    p.bits = lay.bits;
    p.degree = (uint32_t)degree;
    if (!degree)
        p.degree = dropout > 0 ? cnd_secagg_degree_for_dropout(n, dropout, fail_prob)
                               : cnd_secagg_default_degree(n);
    if ((rc = cnd_secagg_params_fill(&p))) return rc;
    const uint32_t n_drop = (uint32_t)lround(dropout * n);
    if (n - n_drop < p.min_survivors)
        return cnd_errf(CND_EINVAL, "--dropout %.2f leaves %u clients, fewer than %u", dropout,
                        n - n_drop, p.min_survivors);

    double rate[3];
    for (int a = 0; a < 3; a++) rate[a] = s_prg_rate((cnd_prg_alg_t)a);

    cnd_progress_t prog;
    cnd_progress_begin(&prog, "secagg bench", 3ull * n, "client steps");
    s_sim_t sim;
    memset(&sim, 0, sizeof sim);
    sim.n = n;
    sim.len = p.len;
    sim.bits = p.bits;
    randombytes_buf(sim.seed, sizeof sim.seed);
    cnd_identity_t **ids = calloc(n, sizeof *ids);
    uint8_t(*enrolled)[32] = malloc((size_t)n * 32);
    sim.cl = calloc(n, sizeof *sim.cl);
    sim.in = calloc(n, sizeof *sim.in);
    sim.out = calloc(n, sizeof *sim.out);
    uint32_t *idx = malloc((size_t)n * sizeof *idx);
    uint8_t *skip = calloc(n, 1), *dropped = calloc(n, 1);
    uint32_t *expect = calloc(p.len, 4), *sum = malloc((size_t)p.len * 4);
    sim.x = malloc((size_t)threads * p.len * 4);
    double *t_mask = calloc((size_t)samples, sizeof(double));
    double *t_share = calloc((size_t)samples, sizeof(double));
    double *c_mask = calloc((size_t)samples, sizeof(double));
    cnd_secagg_server_t *srv = NULL;
    cnd_prg_t *g = cnd_prg_new(CND_PRG_MASK);
    float *upd = malloc((size_t)values * sizeof *upd);
    if (!ids || !enrolled || !sim.cl || !sim.in || !sim.out || !idx || !skip || !dropped ||
        !expect || !sum || !sim.x || !t_mask || !t_share || !c_mask || !g || !upd) {
        rc = cnd_errf(CND_ENOMEM, "out of memory for %u clients x %ld values", n, values);
        goto done;
    }
    for (uint32_t u = 0; u < n; u++) {
        uint8_t s[32] = {0};
        cnd_st_le32(s, u + 1);
        if ((rc = cnd_identity_from_seed(&ids[u], s))) goto done;
        memcpy(enrolled[u], cnd_identity_pk(ids[u]), 32);
        idx[u] = u;
    }
    for (uint32_t u = 0; u < n && !rc; u++)
        rc = cnd_secagg_client_new(&sim.cl[u], &p, u, ids[u], (const uint8_t(*)[32])enrolled, n);
    if (!rc)
        rc = cnd_secagg_server_new(&srv, &p, (const uint8_t(*)[32])enrolled, n, (unsigned)threads);
    if (rc) goto done;

    /* Client-side encoding of a float update (timed once; the masked inputs below are random
     * ring elements of the same width so that the sum can be checked exactly). */
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 11);
    for (long i = 0; i < values; i++) upd[i] = (float)(cnd_rng_normal(&rng) * 0.1);
    uint32_t *enc = sim.x;
    double t_enc = cnd_now();
    if ((rc = cnd_fxp_encode(enc, NULL, &fp, &lay, upd, 500))) goto done;
    t_enc = cnd_now() - t_enc;

    /* Phase 1: adverts. */
    double srv_t = 0, t;
    sim.idx = idx;
    sim.phase = 1;
    if ((rc = cnd_sa_parallel(n, (unsigned)threads, 1, s_sim_step, &sim))) goto done;
    t = cnd_now();
    for (uint32_t u = 0; u < n && !rc; u++)
        rc = cnd_secagg_server_add_advert(srv, u, sim.out[u].data, sim.out[u].len);
    if (!rc) rc = cnd_secagg_server_end_adverts(srv);
    srv_t += cnd_now() - t;
    if (rc) goto done;
    cnd_progress_update(&prog, n, "adverts");

    /* Phase 2: share keys. The first `samples` clients are timed one by one. */
    t = cnd_now();
    for (uint32_t u = 0; u < n && !rc; u++) {
        sim.in[u].len = 0;
        rc = cnd_secagg_server_keys_msg(srv, &sim.in[u], u);
    }
    srv_t += cnd_now() - t;
    uint32_t ns = (uint32_t)(samples < n - n_drop ? samples : n - n_drop);
    sim.phase = 2;
    for (uint32_t i = 0; i < ns && !rc; i++) {
        t = cnd_now();
        rc = s_sim_step(&sim, i, 0);
        t_share[i] = cnd_now() - t;
    }
    sim.idx = idx + ns;
    if (!rc) rc = cnd_sa_parallel(n - ns, (unsigned)threads, 1, s_sim_step, &sim);
    sim.idx = idx;
    t = cnd_now();
    for (uint32_t u = 0; u < n && !rc; u++)
        rc = cnd_secagg_server_add_shares(srv, u, sim.out[u].data, sim.out[u].len);
    if (!rc) rc = cnd_secagg_server_end_shares(srv);
    srv_t += cnd_now() - t;
    if (rc) goto done;
    size_t share_bytes = sim.out[0].len, keys_bytes = sim.in[0].len;
    cnd_progress_update(&prog, 2ull * n, "shares");

    /* Who drops: n_drop random clients outside the timed sample. */
    for (uint32_t c = 0; c < n_drop;) {
        uint32_t u = ns + (uint32_t)cnd_rng_below(&rng, n - ns);
        if (!dropped[u]) {
            dropped[u] = 1;
            c++;
        }
    }
    for (uint32_t u = ns; u < n; u++) skip[u] = !dropped[u];

    /* Phase 3: masked inputs. Timed sample first (full masking), then the simulated rest in
     * batches; the server adds each vector as it arrives. */
    double add_t = 0;
    size_t masked_bytes = 0;
    t = cnd_now();
    for (uint32_t u = 0; u < n && !rc; u++) {
        sim.in[u].len = 0;
        if (!dropped[u]) rc = cnd_secagg_server_shares_msg(srv, &sim.in[u], u);
    }
    srv_t += cnd_now() - t;
    for (uint32_t u = 0; u < ns && !rc; u++) {
        uint32_t *x = sim.x;
        if ((rc = s_input(x, g, sim.seed, u, p.len, p.bits))) break;
        for (uint32_t i = 0; i < p.len; i++) expect[i] += x[i];
        sim.out[u].len = 0;
        t = cnd_now();
        double c0 = s_cpu();
        rc = cnd_secagg_client_mask(sim.cl[u], &sim.out[u], sim.in[u].data, sim.in[u].len, x);
        c_mask[u] = s_cpu() - c0;
        t_mask[u] = cnd_now() - t;
        if (rc) break;
        masked_bytes = sim.out[u].len;
        t = cnd_now();
        rc = cnd_secagg_server_add_masked(srv, u, sim.out[u].data, sim.out[u].len);
        add_t += cnd_now() - t;
        cnd_buf_free(&sim.out[u]);
    }
    uint32_t *batch = malloc((size_t)n * sizeof *batch), nb = 0;
    if (!batch && !rc) rc = cnd_errf(CND_ENOMEM, "out of memory");
    sim.phase = 3;
    sim.skip = skip;
    for (uint32_t u = ns; u < n && !rc; u++) {
        if (!dropped[u]) batch[nb++] = u;
        if (nb == (uint32_t)threads * 2 || (u == n - 1 && nb)) {
            sim.idx = batch;
            if ((rc = cnd_sa_parallel(nb, (unsigned)threads, 1, s_sim_step, &sim))) break;
            for (uint32_t i = 0; i < nb && !rc; i++) {
                uint32_t v = batch[i];
                t = cnd_now();
                rc = cnd_secagg_server_add_masked(srv, v, sim.out[v].data, sim.out[v].len);
                add_t += cnd_now() - t;
                cnd_buf_free(&sim.out[v]);
                if (!rc) rc = s_input(sim.x, g, sim.seed, v, p.len, p.bits);
                for (uint32_t j = 0; j < p.len; j++) expect[j] += sim.x[j];
            }
            cnd_progress_update(&prog, 2ull * n + u, "masked inputs");
            nb = 0;
        }
    }
    free(batch);
    sim.idx = idx;
    t = cnd_now();
    if (!rc) rc = cnd_secagg_server_end_masked(srv);
    srv_t += cnd_now() - t + add_t;
    if (rc) goto done;

    /* Phase 4: consistency (every survivor signs the survivor sets). */
    uint32_t na = 0;
    t = cnd_now();
    for (uint32_t u = 0; u < n && !rc; u++) {
        sim.in[u].len = 0;
        if (!dropped[u]) {
            idx[na++] = u;
            rc = cnd_secagg_server_consistency_msg(srv, &sim.in[u], u);
        }
    }
    srv_t += cnd_now() - t;
    sim.phase = 4;
    if (!rc) rc = cnd_sa_parallel(na, (unsigned)threads, 1, s_sim_step, &sim);
    t = cnd_now();
    for (uint32_t i = 0; i < na && !rc; i++)
        rc = cnd_secagg_server_add_consistency(srv, idx[i], sim.out[idx[i]].data,
                                               sim.out[idx[i]].len);
    if (!rc) rc = cnd_secagg_server_end_consistency(srv);
    for (uint32_t i = 0; i < na && !rc; i++) {
        sim.in[idx[i]].len = 0;
        rc = cnd_secagg_server_unmask_msg(srv, &sim.in[idx[i]], idx[i]);
    }
    srv_t += cnd_now() - t;
    size_t unmask_req_bytes = na ? sim.in[idx[0]].len : 0;

    /* Phase 5: unmask; the first survivor is timed on its own. */
    sim.phase = 5;
    double t_unmask_client = cnd_now();
    if (!rc) rc = s_sim_step(&sim, 0, 0);
    t_unmask_client = cnd_now() - t_unmask_client;
    sim.idx = idx + 1;
    if (!rc) rc = cnd_sa_parallel(na - 1, (unsigned)threads, 1, s_sim_step, &sim);
    sim.idx = idx;
    size_t unmask_bytes = sim.out[idx[0]].len;
    t = cnd_now();
    for (uint32_t i = 0; i < na && !rc; i++)
        rc = cnd_secagg_server_add_unmask(srv, idx[i], sim.out[idx[i]].data, sim.out[idx[i]].len);
    double unmask_t = cnd_now(), unmask_cpu = s_cpu();
    if (!rc) rc = cnd_secagg_server_finish(srv, sum);
    unmask_t = cnd_now() - unmask_t;
    unmask_cpu = s_cpu() - unmask_cpu;
    srv_t += cnd_now() - t;
    cnd_progress_end(&prog);
    if (rc) goto done;
    uint32_t m = p.bits == 32 ? 0xffffffffu : ((1u << p.bits) - 1);
    for (uint32_t i = 0; i < p.len && !rc; i++)
        if ((expect[i] & m) != sum[i])
            rc = cnd_errf(CND_ECORRUPT, "benchmark round produced a wrong sum at element %u", i);
    if (rc) goto done;

    double keys_t, masks_t;
    cnd_secagg_server_finish_times(srv, &keys_t, &masks_t);
    double mask_med = s_median(t_mask, ns), share_med = s_median(t_share, ns);
    double mask_cpu = s_median(c_mask, ns);
    double load[1] = {0};
    if (getloadavg(load, 1) != 1) load[0] = -1;
    size_t packed = cnd_ring_packed_bytes(p.len, p.bits);
    double ratio = (double)masked_bytes / (double)packed;
    if (json) {
        printf("{\"clients\": %u, \"values\": %ld, \"dropout\": %.3f, \"dropped\": %u, ", n, values,
               dropout, n_drop);
        printf("\"threads\": %ld, \"degree\": %u, \"threshold\": %u, \"min_survivors\": %u, "
               "\"ring_bits\": %u, ",
               threads, p.degree, p.threshold, p.min_survivors, p.bits);
        printf("\"prg_gbps\": {\"aes256ctr_openssl\": %.2f, \"chacha20_openssl\": %.2f, "
               "\"chacha20_sodium\": %.2f}, ",
               rate[0], rate[1], rate[2]);
        printf("\"client_encode_s\": %.6f, \"client_share_keys_s\": %.6f, \"client_mask_s\": %.6f, "
               "\"client_mask_cpu_s\": %.6f, \"client_unmask_s\": %.6f, ",
               t_enc, share_med, mask_med, mask_cpu, t_unmask_client);
        printf("\"server_add_masked_s\": %.6f, \"server_unmask_s\": %.6f, "
               "\"server_unmask_cpu_s\": %.6f, \"server_unmask_keys_s\": %.6f, "
               "\"server_unmask_masks_s\": %.6f, \"server_total_s\": %.6f, ",
               add_t, unmask_t, unmask_cpu, keys_t, masks_t, srv_t);
        printf("\"masked_bytes\": %zu, \"packed_plaintext_bytes\": %zu, \"wire_ratio\": %.5f, "
               "\"advert_bytes\": %d, \"shares_bytes\": %zu, \"keys_bytes\": %zu, "
               "\"unmask_req_bytes\": %zu, \"unmask_bytes\": %zu, ",
               masked_bytes, packed, ratio, S_SA_ADVERT_BYTES, share_bytes, keys_bytes,
               unmask_req_bytes, unmask_bytes);
        printf("\"load_avg\": %.2f, \"sum_ok\": true}\n", load[0]);
    } else {
        printf("secure aggregation: %u clients x %ld values, %u dropped after sharing (%.0f%%), "
               "degree %u (k = %u), threshold %u, ring 2^%u\n",
               n, values, n_drop, dropout * 100, p.degree, p.degree + 1, p.threshold, p.bits);
        printf("  mask generator      AES-256-CTR/OpenSSL %.2f GB/s, ChaCha20/OpenSSL %.2f GB/s, "
               "ChaCha20/libsodium %.2f GB/s (using %s)\n",
               rate[0], rate[1], rate[2], cnd_prg_name(CND_PRG_MASK));
        printf(
            "  client encode       %8.3f ms  (clip, weight, stochastic rounding of %ld floats)\n",
            t_enc * 1e3, values);
        printf("  client share keys   %8.3f ms  (median of %u)\n", share_med * 1e3, ns);
        printf("  client masking      %8.3f ms  (median of %u; %u pairwise masks + self mask; "
               "%.3f ms CPU)\n",
               mask_med * 1e3, ns, p.degree, mask_cpu * 1e3);
        printf("  client unmask       %8.3f ms  (checks %u signatures on the survivor sets)\n",
               t_unmask_client * 1e3, p.min_survivors);
        printf("  server add masked   %8.3f ms  (all %u vectors, streaming)\n", add_t * 1e3,
               n - n_drop);
        printf("  server unmask       %8.3f ms  (%ld threads: secrets + key agreement %.3f ms, "
               "mask expansion %.3f ms; %.3f s CPU)\n",
               unmask_t * 1e3, threads, keys_t * 1e3, masks_t * 1e3, unmask_cpu);
        printf("  server total        %8.3f ms  (all server calls of the round)\n", srv_t * 1e3);
        printf("  wire: masked vector %zu bytes, packed plaintext %zu bytes (%.4fx); per client "
               "also advert %d, shares %zu, keys received %zu, unmask request %zu, unmask %zu "
               "bytes\n",
               masked_bytes, packed, ratio, S_SA_ADVERT_BYTES, share_bytes, keys_bytes,
               unmask_req_bytes, unmask_bytes);
        printf("  sum check           exact (%u survivors); load average %.2f\n", n - n_drop,
               load[0]);
    }
done:
    cnd_progress_end(&prog);
    if (sim.cl)
        for (uint32_t u = 0; u < n; u++) {
            cnd_secagg_client_destroy(&sim.cl[u]);
            cnd_buf_free(&sim.in[u]);
            cnd_buf_free(&sim.out[u]);
        }
    if (ids)
        for (uint32_t u = 0; u < n; u++) cnd_identity_destroy(&ids[u]);
    cnd_secagg_server_destroy(&srv);
    cnd_prg_destroy(&g);
    free(ids);
    free(enrolled);
    free(sim.cl);
    free(sim.in);
    free(sim.out);
    free(idx);
    free(skip);
    free(dropped);
    free(expect);
    free(sum);
    free(sim.x);
    free(t_mask);
    free(t_share);
    free(c_mask);
    free(upd);
    return rc;
}
