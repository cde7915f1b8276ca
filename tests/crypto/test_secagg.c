/*
 * test_secagg.c: whole secure-aggregation rounds in one process (crypto/secagg.h): n from 3 to
 * 200, clients dropping at each phase, the sum checked exactly against the plain sum of the
 * survivors' inputs; and the attacks the protocol must stop: a server asking for both shares of
 * one client, a server showing different survivor sets to different clients (to isolate one
 * client's update), tampered or misrouted share ciphertexts, forged, replayed or moved round
 * keys, an identity at another's index or posing as two clients, a KEYS message that leaves a
 * participant out, malformed or misattributed messages (refused without changing state), clean
 * failure below the threshold; and a neighbour graph that follows the sites' fresh keys, not the
 * coordinator's round seed.
 */
#include "check.h"
#include "rng.h"
#include "secagg.h"
#include "secagg_internal.h"
#include "sign.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum { DROP_NONE, DROP_ADVERT, DROP_SHARES, DROP_MASKED, DROP_CONSIST, DROP_UNMASK };

typedef struct {
    cnd_secagg_params_t p;
    uint32_t n;
    cnd_identity_t **ids;
    cnd_secagg_member_t *roster;
    cnd_secagg_client_t **cl;
    cnd_secagg_server_t *srv;
    uint32_t **x;    /* inputs */
    uint8_t *drop;   /* DROP_* per client */
    uint8_t *failed; /* client objects that refused a step */
} round_t;

static void r_init(round_t *r, uint32_t n, uint32_t len, uint32_t bits, uint32_t degree,
                   uint64_t seed, unsigned threads)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    r->p.round_id = 1000 + seed;
    for (int i = 0; i < 32; i++) r->p.round_seed[i] = (uint8_t)(seed * 31 + (uint64_t)i);
    r->p.n = n;
    r->p.degree = degree;
    r->p.len = len;
    r->p.bits = bits;
    CHECK(cnd_secagg_params_fill(&r->p) == 0);
    r->ids = calloc(n, sizeof *r->ids);
    r->roster = calloc(n, sizeof *r->roster);
    r->cl = calloc(n, sizeof *r->cl);
    r->x = calloc(n, sizeof *r->x);
    r->drop = calloc(n, 1);
    r->failed = calloc(n, 1);
    cnd_rng_t rng, idrng;
    cnd_rng_seed(&rng, seed);
    cnd_rng_seed(&idrng, 12345); /* the same federation members in every round */
    for (uint32_t u = 0; u < n; u++) {
        uint8_t s[32];
        for (int i = 0; i < 32; i++) s[i] = (uint8_t)cnd_rng_u64(&idrng);
        CHECK(cnd_identity_from_seed(&r->ids[u], s) == 0);
        memcpy(r->roster[u].id_pk, cnd_identity_pk(r->ids[u]), 32);
        r->roster[u].cert_sha256[0] = (uint8_t)u; /* stands for the certificate's digest */
        r->x[u] = malloc((size_t)len * 4);
        uint64_t m = bits == 32 ? 0xffffffffull : ((1ull << bits) - 1);
        for (uint32_t i = 0; i < len; i++) r->x[u][i] = (uint32_t)(cnd_rng_u64(&rng) & m);
    }
    for (uint32_t u = 0; u < n; u++)
        CHECK(cnd_secagg_client_new(&r->cl[u], &r->p, u, r->ids[u], r->roster) == 0);
    CHECK(cnd_secagg_server_new(&r->srv, &r->p, r->roster, threads) == 0);
}

static void r_free(round_t *r)
{
    for (uint32_t u = 0; u < r->n; u++) {
        cnd_secagg_client_destroy(&r->cl[u]);
        cnd_identity_destroy(&r->ids[u]);
        free(r->x[u]);
    }
    cnd_secagg_server_destroy(&r->srv);
    free(r->ids);
    free(r->roster);
    free(r->cl);
    free(r->x);
    free(r->drop);
    free(r->failed);
}

static int r_phase1(round_t *r)
{
    cnd_buf_t b;
    for (uint32_t u = 0; u < r->n; u++) {
        if (r->drop[u] == DROP_ADVERT) continue;
        cnd_buf_init(&b);
        CHECK(cnd_secagg_client_advertise(r->cl[u], &b) == 0);
        CHECK(cnd_secagg_server_add_advert(r->srv, u, b.data, b.len) == 0);
        cnd_buf_free(&b);
    }
    return cnd_secagg_server_end_adverts(r->srv);
}

static int r_phase2(round_t *r)
{
    cnd_buf_t k, s;
    for (uint32_t u = 0; u < r->n; u++) {
        if (r->drop[u] == DROP_ADVERT) continue;
        cnd_buf_init(&k);
        cnd_buf_init(&s);
        CHECK(cnd_secagg_server_keys_msg(r->srv, &k, u) == 0);
        int rc = cnd_secagg_client_share_keys(r->cl[u], &s, k.data, k.len);
        if (rc) r->failed[u] = 1;
        if (!rc && r->drop[u] != DROP_SHARES)
            CHECK(cnd_secagg_server_add_shares(r->srv, u, s.data, s.len) == 0);
        cnd_buf_free(&k);
        cnd_buf_free(&s);
    }
    return cnd_secagg_server_end_shares(r->srv);
}

static int r_phase3(round_t *r)
{
    cnd_buf_t k, s;
    const uint8_t *st = cnd_secagg_server_status(r->srv);
    for (uint32_t u = 0; u < r->n; u++) {
        if (!(st[u] & CND_SECAGG_ST_SHARED)) continue;
        cnd_buf_init(&k);
        cnd_buf_init(&s);
        CHECK(cnd_secagg_server_shares_msg(r->srv, &k, u) == 0);
        if (r->drop[u] != DROP_MASKED) {
            int rc = cnd_secagg_client_mask(r->cl[u], &s, k.data, k.len, r->x[u]);
            CHECK(rc == 0);
            if (!rc) CHECK(cnd_secagg_server_add_masked(r->srv, u, s.data, s.len) == 0);
        }
        cnd_buf_free(&k);
        cnd_buf_free(&s);
    }
    return cnd_secagg_server_end_masked(r->srv);
}

/* Consistency: every client that masked signs the survivor sets (except DROP_CONSIST). */
static int r_phase4(round_t *r)
{
    cnd_buf_t k, s;
    const uint8_t *st = cnd_secagg_server_status(r->srv);
    for (uint32_t u = 0; u < r->n; u++) {
        if (!(st[u] & CND_SECAGG_ST_MASKED) || (st[u] & CND_SECAGG_ST_SIGNED) ||
            r->drop[u] == DROP_CONSIST)
            continue;
        cnd_buf_init(&k);
        cnd_buf_init(&s);
        CHECK(cnd_secagg_server_consistency_msg(r->srv, &k, u) == 0);
        CHECK(cnd_secagg_client_consistency(r->cl[u], &s, k.data, k.len) == 0);
        CHECK(cnd_secagg_server_add_consistency(r->srv, u, s.data, s.len) == 0);
        cnd_buf_free(&k);
        cnd_buf_free(&s);
    }
    return cnd_secagg_server_end_consistency(r->srv);
}

static void r_phase5(round_t *r, int include_unmask_droppers)
{
    cnd_buf_t k, s;
    const uint8_t *st = cnd_secagg_server_status(r->srv);
    for (uint32_t u = 0; u < r->n; u++) {
        if (!(st[u] & CND_SECAGG_ST_SIGNED) || (st[u] & CND_SECAGG_ST_UNMASKED)) continue;
        if (r->drop[u] == DROP_UNMASK && !include_unmask_droppers) continue;
        cnd_buf_init(&k);
        cnd_buf_init(&s);
        CHECK(cnd_secagg_server_unmask_msg(r->srv, &k, u) == 0);
        CHECK(cnd_secagg_client_unmask(r->cl[u], &s, k.data, k.len) == 0);
        CHECK(cnd_secagg_server_add_unmask(r->srv, u, s.data, s.len) == 0);
        cnd_buf_free(&k);
        cnd_buf_free(&s);
    }
}

/* The sum the server must find: inputs of the clients that delivered masked vectors. */
static int r_check_sum(round_t *r, const uint32_t *sum)
{
    const uint8_t *st = cnd_secagg_server_status(r->srv);
    uint64_t m = r->p.bits == 32 ? 0xffffffffull : ((1ull << r->p.bits) - 1);
    int ok = 1;
    for (uint32_t i = 0; i < r->p.len; i++) {
        uint64_t want = 0;
        for (uint32_t u = 0; u < r->n; u++)
            if (st[u] & CND_SECAGG_ST_MASKED) want += r->x[u][i];
        ok &= (want & m) == sum[i];
    }
    return ok;
}

/* Runs a full round with the given dropouts; returns the finish code, checks the sum on 0. */
static int r_run(round_t *r)
{
    int rc = r_phase1(r);
    if (!rc) rc = r_phase2(r);
    if (!rc) rc = r_phase3(r);
    if (!rc) rc = r_phase4(r);
    if (rc) return rc;
    r_phase5(r, 0);
    uint32_t *sum = malloc((size_t)r->p.len * 4);
    rc = cnd_secagg_server_finish(r->srv, sum);
    if (!rc) CHECK(r_check_sum(r, sum));
    free(sum);
    return rc;
}

/* Phases 2.. of a round whose adverts are in; returns the finish code, checks the sum on 0. */
static int r_run_from2(round_t *r)
{
    int rc = r_phase2(r);
    if (!rc) rc = r_phase3(r);
    if (!rc) rc = r_phase4(r);
    if (rc) return rc;
    r_phase5(r, 0);
    uint32_t *sum = malloc((size_t)r->p.len * 4);
    rc = cnd_secagg_server_finish(r->srv, sum);
    if (!rc) CHECK(r_check_sum(r, sum));
    free(sum);
    return rc;
}

static void s_drop_random(round_t *r, cnd_rng_t *rng, uint32_t per_phase)
{
    for (int ph = DROP_SHARES; ph <= DROP_UNMASK; ph++) /* a missing advert fails the round */
        for (uint32_t c = 0; c < per_phase;) {
            uint32_t u = (uint32_t)cnd_rng_below(rng, r->n);
            if (r->drop[u]) continue;
            r->drop[u] = (uint8_t)ph;
            c++;
        }
}

static void test_small_complete(void)
{
    /* n = 3..9 (complete graphs except n = 8): no dropout, then one dropout at each phase. The
     * graph is drawn from every participant's advert, so a client missing at that phase fails
     * the round cleanly (it is redone as a new attempt). */
    for (uint32_t n = 3; n <= 9; n++) {
        for (int ph = DROP_NONE; ph <= DROP_UNMASK; ph++) {
            round_t r;
            r_init(&r, n, 257, n % 2 ? 16 : 11, 0, n * 10 + (uint64_t)ph, 1);
            CHECK_EQ_INT(r.p.degree, (n == 8 ? 6 : n - 1)); /* 2 ceil(log2 n), capped at n-1 */
            if (ph != DROP_NONE) r.drop[n / 2] = (uint8_t)ph;
            int rc = r_run(&r);
            if (ph == DROP_ADVERT) {
                CHECK_EQ_INT(rc, CND_ESTATE);
                CHECK(strstr(cnd_err_detail(), "did not advertise") != NULL);
            } else {
                if (rc) fprintf(stderr, "n=%u drop phase %d: %s\n", n, ph, cnd_err_detail());
                CHECK_EQ_INT(rc, 0);
            }
            r_free(&r);
        }
    }
    /* n = 5 (t = 3): two clients may drop after sharing and the round still finishes. */
    round_t r;
    r_init(&r, 5, 100, 20, 0, 77, 1);
    r.drop[1] = DROP_MASKED;
    r.drop[3] = DROP_UNMASK;
    CHECK_EQ_INT(r_run(&r), 0);
    r_free(&r);
}

static void test_sparse(void)
{
    static const struct {
        uint32_t n, len, bits, per_phase;
        unsigned threads;
    } cases[] = {
        {20, 1000, 16, 1, 1},  {40, 333, 24, 2, 2},   {64, 4096, 32, 2, 2},
        {100, 1500, 13, 3, 2}, {200, 2000, 16, 5, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        round_t r;
        uint32_t n = cases[c].n;
        /* degree chosen for a few percent of dropout per phase */
        uint32_t deg = cnd_secagg_degree_for_dropout(n, 0.12, 1e-4);
        r_init(&r, n, cases[c].len, cases[c].bits, deg, 500 + c, cases[c].threads);
        if (n >= 64) CHECK(r.p.degree < n - 1);
        cnd_rng_t rng;
        cnd_rng_seed(&rng, 900 + c);
        s_drop_random(&r, &rng, cases[c].per_phase);
        int rc = r_run(&r);
        if (rc) fprintf(stderr, "n=%u: %s\n", n, cnd_err_detail());
        CHECK_EQ_INT(rc, 0);
        uint32_t k;
        const uint32_t *nb = NULL;
        cnd_secagg_graph_t *g = NULL;
        uint8_t gs[32] = {(uint8_t)c};
        CHECK(cnd_secagg_graph_new(&g, &r.p, gs) == 0);
        /* The graph is symmetric, every neighbourhood has k members including the client. */
        int sym = 1;
        for (uint32_t u = 0; u < n; u++) {
            nb = cnd_secagg_graph_neighbours(g, u, &k);
            sym &= k == r.p.degree + 1 && cnd_secagg_graph_pos(g, u, u) >= 0;
            for (uint32_t j = 0; j < k; j++) sym &= cnd_secagg_graph_pos(g, nb[j], u) >= 0;
        }
        CHECK(sym);
        cnd_secagg_graph_destroy(&g);
        r_free(&r);
    }
}

/* The default degree at n = 200 without dropout; the same graph for the same parameters. */
static void test_default_degree(void)
{
    round_t r;
    r_init(&r, 200, 64, 16, 0, 4242, 1);
    CHECK_EQ_INT(r.p.degree, 16); /* 2 * ceil(log2 200) */
    CHECK_EQ_INT(r.p.threshold, 9);
    CHECK_EQ_INT(r_run(&r), 0);
    r_free(&r);
    CHECK_EQ_INT(cnd_secagg_default_degree(3), 2);
    CHECK_EQ_INT(cnd_secagg_default_degree(500), 18);
    CHECK(cnd_secagg_degree_for_dropout(500, 0.3, 1e-3) >
          cnd_secagg_degree_for_dropout(500, 0.1, 1e-3));
}

/* Below the threshold the round fails with a reason; late answers let it finish. */
static void test_below_threshold(void)
{
    round_t r;
    r_init(&r, 7, 50, 16, 0, 31, 1);                          /* complete, k = 7, t = 4 */
    for (uint32_t u = 0; u < 4; u++) r.drop[u] = DROP_UNMASK; /* only 3 answer */
    CHECK(r_phase1(&r) == 0 && r_phase2(&r) == 0 && r_phase3(&r) == 0 && r_phase4(&r) == 0);
    r_phase5(&r, 0);
    uint32_t sum[50];
    CHECK_EQ_INT(cnd_secagg_server_finish(r.srv, sum), CND_ESTATE);
    CHECK(strstr(cnd_err_detail(), "shares needed") != NULL);
    r_phase5(&r, 1); /* the slow clients answer after all */
    CHECK_EQ_INT(cnd_secagg_server_finish(r.srv, sum), 0);
    CHECK(r_check_sum(&r, sum));
    r_free(&r);

    /* Too few masked inputs: the server refuses to reveal a sum of them. */
    r_init(&r, 6, 10, 16, 0, 32, 1);
    r.p.min_survivors = 5;
    cnd_secagg_server_destroy(&r.srv);
    CHECK(cnd_secagg_server_new(&r.srv, &r.p, r.roster, 1) == 0);
    for (uint32_t u = 0; u < 6; u++) {
        cnd_secagg_client_destroy(&r.cl[u]);
        CHECK(cnd_secagg_client_new(&r.cl[u], &r.p, u, r.ids[u], r.roster) == 0);
    }
    r.drop[0] = DROP_MASKED;
    r.drop[1] = DROP_MASKED;
    CHECK(r_phase1(&r) == 0 && r_phase2(&r) == 0);
    CHECK_EQ_INT(r_phase3(&r), CND_ESTATE);
    CHECK(strstr(cnd_err_detail(), "at least 5") != NULL);
    r_free(&r);
}

/* A client refuses to reveal both kinds of share for one peer, and to be called dropped. */
static void test_refuse_both(void)
{
    round_t r;
    r_init(&r, 5, 40, 16, 0, 41, 1);
    r.drop[2] = DROP_MASKED;
    CHECK(r_phase1(&r) == 0 && r_phase2(&r) == 0 && r_phase3(&r) == 0 && r_phase4(&r) == 0);
    /* Honest request to client 0: alive {0,1,3,4}, dropped {2}. The server lies: 1 also dropped. */
    cnd_buf_t q, a;
    cnd_buf_init(&q);
    cnd_buf_init(&a);
    cnd_sa_hdr_put(&q, CND_SECAGG_UNMASK_REQ, r.p.round_id, CND_SECAGG_SERVER, 0);
    uint32_t alive[] = {0, 1, 3, 4}, dropped[] = {1, 2};
    cnd_buf_u32(&q, 4);
    for (int i = 0; i < 4; i++) cnd_buf_u32(&q, alive[i]);
    cnd_buf_u32(&q, 2);
    for (int i = 0; i < 2; i++) cnd_buf_u32(&q, dropped[i]);
    CHECK_EQ_INT(cnd_secagg_client_unmask(r.cl[0], &a, q.data, q.len), CND_EPERM);
    CHECK(strstr(cnd_err_detail(), "both") != NULL);
    CHECK_EQ_INT(a.len, 0);
    /* Having seen that, client 0 answers nothing more, not even the honest request. */
    cnd_buf_t h;
    cnd_buf_init(&h);
    CHECK(cnd_secagg_server_unmask_msg(r.srv, &h, 0) == 0);
    CHECK_EQ_INT(cnd_secagg_client_unmask(r.cl[0], &a, h.data, h.len), CND_ESTATE);
    cnd_buf_free(&h);
    /* Client 1 told it dropped itself. */
    q.len = 0;
    cnd_sa_hdr_put(&q, CND_SECAGG_UNMASK_REQ, r.p.round_id, CND_SECAGG_SERVER, 1);
    cnd_buf_u32(&q, 2);
    cnd_buf_u32(&q, 0);
    cnd_buf_u32(&q, 3);
    cnd_buf_u32(&q, 2);
    cnd_buf_u32(&q, 1);
    cnd_buf_u32(&q, 2);
    CHECK_EQ_INT(cnd_secagg_client_unmask(r.cl[1], &a, q.data, q.len), CND_EPERM);
    CHECK(strstr(cnd_err_detail(), "calls this client dropped") != NULL);
    /* Client 3 asked twice by a replaying server: the second time it refuses. */
    cnd_buf_init(&h);
    CHECK(cnd_secagg_server_unmask_msg(r.srv, &h, 3) == 0);
    CHECK_EQ_INT(cnd_secagg_client_unmask(r.cl[3], &a, h.data, h.len), 0);
    a.len = 0;
    CHECK_EQ_INT(cnd_secagg_client_unmask(r.cl[3], &a, h.data, h.len), CND_ESTATE);
    cnd_buf_free(&h);
    cnd_buf_free(&q);
    cnd_buf_free(&a);
    r_free(&r);
}

/* A CONSIST_REQ with the given survivor bitmaps, for client v. */
static void s_consist_req(cnd_buf_t *q, const round_t *r, uint32_t v, const uint8_t *u2,
                          const uint8_t *u3)
{
    q->len = 0;
    cnd_sa_hdr_put(q, CND_SECAGG_CONSIST_REQ, r->p.round_id, CND_SECAGG_SERVER, v);
    cnd_buf_u32(q, r->n);
    cnd_buf_put(q, u2, cnd_sa_bitmap_bytes(r->n));
    cnd_buf_put(q, u3, cnd_sa_bitmap_bytes(r->n));
}

/* Distributed DP's survivor floor (cnd_secagg_client_require): a client refuses parameters
 * that would let the server unmask fewer sites than the floor (a survivor minimum below it, or
 * a sparse graph whose threshold is below it), and a survivor set below the floor, naming the
 * reason; once it refused, it answers no unmask request, so the small sum stays masked. */
static void test_ddp_floor(void)
{
    round_t r;
    r_init(&r, 5, 20, 16, 0, 140, 1); /* complete: k = 5, t = 3, min_survivors = 3 */
    CHECK_EQ_INT(r.p.min_survivors, 3);
    CHECK_EQ_INT(cnd_secagg_client_require(r.cl[0], 4), CND_EPERM);
    CHECK(strstr(cnd_err_detail(), "survivor minimum 3 is below 4") != NULL);
    CHECK_EQ_INT(cnd_secagg_client_require(r.cl[0], 3), 0);
    r_free(&r);
    r_init(&r, 9, 20, 16, 4, 141, 1); /* sparse: k = 5, t = 3, min_survivors = 5 */
    CHECK_EQ_INT(r.p.threshold, 3);
    CHECK_EQ_INT(r.p.min_survivors, 5);
    CHECK_EQ_INT(cnd_secagg_client_require(r.cl[1], 5), CND_EPERM);
    CHECK(strstr(cnd_err_detail(), "neighbour graph") != NULL);
    CHECK_EQ_INT(cnd_secagg_client_require(r.cl[1], 3), 0);
    r_free(&r);
    /* A server that lets client 3 drop after masking and shows clients 0..2 a U3 of {0, 1}
     * (2 of the 3 sites distributed DP needs) to get their unmask shares. */
    r_init(&r, 4, 20, 16, 0, 142, 1); /* complete: t = 3, min_survivors = 3 */
    for (uint32_t u = 0; u < 4; u++) CHECK_EQ_INT(cnd_secagg_client_require(r.cl[u], 3), 0);
    CHECK(r_phase1(&r) == 0 && r_phase2(&r) == 0 && r_phase3(&r) == 0);
    uint8_t u2 = 0x0f, small = 0x03;
    cnd_buf_t q, sig, a;
    cnd_buf_init(&q);
    cnd_buf_init(&sig);
    cnd_buf_init(&a);
    for (uint32_t u = 0; u < 2; u++) {
        s_consist_req(&q, &r, u, &u2, &small);
        CHECK_EQ_INT(cnd_secagg_client_consistency(r.cl[u], &sig, q.data, q.len), CND_EPERM);
        CHECK(strstr(cnd_err_detail(), "only 2 survivors; distributed DP needs") != NULL);
        CHECK_EQ_INT(sig.len, 0);
    }
    /* Refused for good: an unmask request for those sets gets nothing. */
    q.len = 0;
    cnd_sa_hdr_put(&q, CND_SECAGG_UNMASK_REQ, r.p.round_id, CND_SECAGG_SERVER, 0);
    cnd_buf_u32(&q, 2);
    cnd_buf_u32(&q, 0);
    cnd_buf_u32(&q, 1);
    cnd_buf_u32(&q, 0);
    cnd_buf_u32(&q, 0);
    CHECK(cnd_secagg_client_unmask(r.cl[0], &a, q.data, q.len) != 0);
    CHECK_EQ_INT(a.len, 0);
    /* The honest survivor set (all four) is still signed by the clients not yet asked. */
    uint8_t all = 0x0f;
    s_consist_req(&q, &r, 2, &u2, &all);
    CHECK_EQ_INT(cnd_secagg_client_consistency(r.cl[2], &sig, q.data, q.len), 0);
    cnd_buf_free(&q);
    cnd_buf_free(&sig);
    cnd_buf_free(&a);
    r_free(&r);
}

/* A malicious server shows different survivor sets to different clients, to collect the
 * self-mask shares of a victim from some and the mask-key shares of its neighbours from others.
 * With a strict majority of signatures required on one set, no unmask request can be answered. */
static void test_inconsistent_sets(void)
{
    round_t r;
    r_init(&r, 6, 30, 16, 0, 130, 1); /* complete: k = 6, t = 4, min_survivors = 4 */
    CHECK_EQ_INT(r.p.min_survivors, 4);
    CHECK(r_phase1(&r) == 0 && r_phase2(&r) == 0 && r_phase3(&r) == 0);
    uint8_t u2 = 0x3f, all = 0x3f, no5 = 0x1f, no0 = 0x3e;
    cnd_buf_t q, sig[6], a;
    cnd_buf_init(&q);
    cnd_buf_init(&a);
    /* Version A (everyone survived) to clients 0, 1, 2; version B (client 5 "dropped") to 3, 4. */
    for (uint32_t u = 0; u < 5; u++) {
        cnd_buf_init(&sig[u]);
        s_consist_req(&q, &r, u, &u2, u < 3 ? &all : &no5);
        CHECK(cnd_secagg_client_consistency(r.cl[u], &sig[u], q.data, q.len) == 0);
    }
    /* Client 5 will not sign a set that leaves it out. */
    cnd_buf_init(&sig[5]);
    s_consist_req(&q, &r, 5, &u2, &no5);
    CHECK_EQ_INT(cnd_secagg_client_consistency(r.cl[5], &sig[5], q.data, q.len), CND_EPERM);
    CHECK(strstr(cnd_err_detail(), "leaves out this client") != NULL);
    /* Request to client 0 under version A with the 3 version-A signatures: too few. */
    q.len = 0;
    cnd_sa_hdr_put(&q, CND_SECAGG_UNMASK_REQ, r.p.round_id, CND_SECAGG_SERVER, 0);
    cnd_buf_u32(&q, 6);
    for (uint32_t u = 0; u < 6; u++) cnd_buf_u32(&q, u);
    cnd_buf_u32(&q, 0);
    size_t lists = q.len;
    cnd_buf_u32(&q, 3);
    for (uint32_t u = 0; u < 3; u++) {
        cnd_buf_u32(&q, u);
        cnd_buf_put(&q, cnd_identity_pk(r.ids[u]), 32);
        cnd_buf_put(&q, sig[u].data + CND_SECAGG_HDR_BYTES, 64);
    }
    CHECK_EQ_INT(cnd_secagg_client_unmask(r.cl[0], &a, q.data, q.len), CND_ECRYPTO);
    CHECK(strstr(cnd_err_detail(), "only 3 survivors signed") != NULL);
    CHECK_EQ_INT(a.len, 0);
    /* Client 1, with version B's signatures padded in: they are not over the set it signed. */
    q.len = 0;
    cnd_sa_hdr_put(&q, CND_SECAGG_UNMASK_REQ, r.p.round_id, CND_SECAGG_SERVER, 1);
    cnd_buf_u32(&q, 6);
    for (uint32_t u = 0; u < 6; u++) cnd_buf_u32(&q, u);
    cnd_buf_u32(&q, 0);
    cnd_buf_u32(&q, 5);
    for (uint32_t u = 0; u < 5; u++) {
        cnd_buf_u32(&q, u);
        cnd_buf_put(&q, cnd_identity_pk(r.ids[u]), 32);
        cnd_buf_put(&q, sig[u].data + CND_SECAGG_HDR_BYTES, 64);
    }
    CHECK_EQ_INT(cnd_secagg_client_unmask(r.cl[1], &a, q.data, q.len), CND_ECRYPTO);
    CHECK(strstr(cnd_err_detail(), "different sets") != NULL);
    /* Client 3 (version B) asked as if client 5 were alive: differs from what it signed. */
    q.len = 0;
    cnd_sa_hdr_put(&q, CND_SECAGG_UNMASK_REQ, r.p.round_id, CND_SECAGG_SERVER, 3);
    cnd_buf_u32(&q, 6);
    for (uint32_t u = 0; u < 6; u++) cnd_buf_u32(&q, u);
    cnd_buf_u32(&q, 0);
    cnd_buf_u32(&q, 0);
    CHECK_EQ_INT(cnd_secagg_client_unmask(r.cl[3], &a, q.data, q.len), CND_EPROTO);
    CHECK(strstr(cnd_err_detail(), "differently from the survivor set") != NULL);
    /* Client 4 (version B, lists right) with a forged signature; then it refuses anything. */
    for (int attempt = 0; attempt < 2; attempt++) {
        q.len = 0;
        cnd_sa_hdr_put(&q, CND_SECAGG_UNMASK_REQ, r.p.round_id, CND_SECAGG_SERVER, 4);
        cnd_buf_u32(&q, 5);
        for (uint32_t u = 0; u < 5; u++) cnd_buf_u32(&q, u);
        cnd_buf_u32(&q, 1);
        cnd_buf_u32(&q, 5);
        cnd_buf_u32(&q, 4);
        uint32_t who[4] = {0, 1, 3, 4};
        for (int i = 0; i < 4; i++) {
            cnd_buf_u32(&q, who[i]);
            cnd_buf_put(&q, cnd_identity_pk(r.ids[who[i]]), 32);
            cnd_buf_put(&q, sig[who[i]].data + CND_SECAGG_HDR_BYTES, 64);
        }
        CHECK_EQ_INT(cnd_secagg_client_unmask(r.cl[4], &a, q.data, q.len),
                     attempt == 0 ? CND_ECRYPTO : CND_ESTATE);
    }
    (void)lists;
    (void)no0;
    for (uint32_t u = 0; u < 6; u++) cnd_buf_free(&sig[u]);
    cnd_buf_free(&q);
    cnd_buf_free(&a);
    r_free(&r);

    /* Survivor sets that contradict what a client saw are refused at signing. */
    r_init(&r, 5, 10, 16, 0, 131, 1);
    r.drop[4] = DROP_SHARES;
    CHECK(r_phase1(&r) == 0 && r_phase2(&r) == 0 && r_phase3(&r) == 0);
    cnd_buf_init(&q);
    cnd_buf_init(&a);
    uint8_t lie2 = 0x1f, ok2 = 0x0f, ok3 = 0x0f, small3 = 0x03;
    s_consist_req(&q, &r, 0, &lie2, &ok3); /* says 4 shared; 0 never got its share */
    CHECK_EQ_INT(cnd_secagg_client_consistency(r.cl[0], &a, q.data, q.len), CND_EPROTO);
    s_consist_req(&q, &r, 1, &ok2, &small3); /* only two survivors: below min_survivors */
    CHECK_EQ_INT(cnd_secagg_client_consistency(r.cl[1], &a, q.data, q.len), CND_EPERM);
    CHECK(strstr(cnd_err_detail(), "fewer than 3") != NULL);
    cnd_buf_free(&q);
    cnd_buf_free(&a);
    r_free(&r);

    /* A colluding client signing the (true) survivor sets under a second index: a signature
     * counts only under the roster's identity at its index. */
    r_init(&r, 6, 10, 16, 0, 132, 1);
    CHECK(r_phase1(&r) == 0 && r_phase2(&r) == 0 && r_phase3(&r) == 0);
    cnd_buf_init(&q);
    cnd_buf_init(&a);
    cnd_buf_t sg[6];
    uint8_t allb = 0x3f;
    for (uint32_t u = 0; u < 3; u++) {
        cnd_buf_init(&sg[u]);
        s_consist_req(&q, &r, u, &allb, &allb);
        CHECK(cnd_secagg_client_consistency(r.cl[u], &sg[u], q.data, q.len) == 0);
    }
    uint8_t D[32], sd[32], m[S_SA_CONSIST_SIGNED], extra[64];
    cnd_sa_params_digest(D, &r.p, r.roster);
    cnd_sa_survivors_digest(sd, D, 6, &allb, &allb);
    cnd_sa_consist_signed(m, D, 3, sd);
    CHECK(cnd_sign(extra, r.ids[0], "secagg-consistency", m, sizeof m) == 0);
    q.len = 0;
    cnd_sa_hdr_put(&q, CND_SECAGG_UNMASK_REQ, r.p.round_id, CND_SECAGG_SERVER, 0);
    cnd_buf_u32(&q, 6);
    for (uint32_t u = 0; u < 6; u++) cnd_buf_u32(&q, u);
    cnd_buf_u32(&q, 0);
    cnd_buf_u32(&q, 4);
    for (uint32_t u = 0; u < 4; u++) {
        cnd_buf_u32(&q, u);
        cnd_buf_put(&q, cnd_identity_pk(r.ids[u == 3 ? 0 : u]), 32);
        cnd_buf_put(&q, u == 3 ? extra : sg[u].data + CND_SECAGG_HDR_BYTES, 64);
    }
    CHECK_EQ_INT(cnd_secagg_client_unmask(r.cl[0], &a, q.data, q.len), CND_ECRYPTO);
    CHECK(strstr(cnd_err_detail(), "not the roster's at that index") != NULL);
    for (uint32_t u = 0; u < 3; u++) cnd_buf_free(&sg[u]);
    cnd_buf_free(&q);
    cnd_buf_free(&a);
    r_free(&r);
}

/* Runs phases 1-2 normally and returns client v's SHARES_FOR message in *m. */
static void s_shares_for(round_t *r, uint32_t v, cnd_buf_t *m)
{
    CHECK(r_phase1(r) == 0 && r_phase2(r) == 0);
    cnd_buf_init(m);
    CHECK(cnd_secagg_server_shares_msg(r->srv, m, v) == 0);
}

static void test_tampered_shares(void)
{
    round_t r;
    cnd_buf_t m, out;
    /* One flipped bit anywhere in a ciphertext (nonce, body, tag). */
    for (size_t off = 0; off < S_SA_CT_BYTES; off += 37) {
        r_init(&r, 4, 16, 16, 0, 51 + off, 1);
        s_shares_for(&r, 0, &m);
        cnd_buf_init(&out);
        m.data[CND_SECAGG_HDR_BYTES + 4 + 4 + off] ^= 0x20;
        CHECK_EQ_INT(cnd_secagg_client_mask(r.cl[0], &out, m.data, m.len, r.x[0]), CND_ECRYPTO);
        CHECK(strstr(cnd_err_detail(), "fails authentication") != NULL);
        CHECK_EQ_INT(out.len, 0);
        cnd_buf_free(&m);
        cnd_buf_free(&out);
        r_free(&r);
    }
    /* Misrouting: the ciphertext client 1 made for client 0 relabelled as coming from client 2. */
    r_init(&r, 4, 16, 16, 0, 60, 1);
    s_shares_for(&r, 0, &m);
    size_t e = CND_SECAGG_HDR_BYTES + 4, esz = 4 + S_SA_CT_BYTES;
    CHECK_EQ_INT(cnd_le32(m.data + e), 1);
    uint8_t tmp[4 + S_SA_CT_BYTES];
    memcpy(tmp, m.data + e + 4, S_SA_CT_BYTES);
    memcpy(m.data + e + 4, m.data + e + esz + 4, S_SA_CT_BYTES);
    memcpy(m.data + e + esz + 4, tmp, S_SA_CT_BYTES);
    cnd_buf_init(&out);
    CHECK_EQ_INT(cnd_secagg_client_mask(r.cl[0], &out, m.data, m.len, r.x[0]), CND_ECRYPTO);
    cnd_buf_free(&m);
    cnd_buf_free(&out);
    /* A share meant for client 2 delivered to client 0 (same sender 1). */
    cnd_buf_t m2;
    cnd_buf_init(&m);
    cnd_buf_init(&m2);
    CHECK(cnd_secagg_server_shares_msg(r.srv, &m, 3) == 0);
    CHECK(cnd_secagg_server_shares_msg(r.srv, &m2, 2) == 0);
    /* in m (to 3) the first entry is from 0; in m2 (to 2) from 0 too: swap their ciphertexts */
    memcpy(m.data + e + 4, m2.data + e + 4, S_SA_CT_BYTES);
    cnd_buf_init(&out);
    CHECK_EQ_INT(cnd_secagg_client_mask(r.cl[3], &out, m.data, m.len, r.x[3]), CND_ECRYPTO);
    cnd_buf_free(&m);
    cnd_buf_free(&m2);
    cnd_buf_free(&out);
    r_free(&r);
}

static void test_forged_and_replayed_keys(void)
{
    round_t r, old;
    cnd_buf_t b, k, out;
    /* A server that swaps a neighbour's mask key in the relayed advert. */
    r_init(&r, 4, 16, 16, 0, 70, 1);
    CHECK(r_phase1(&r) == 0);
    cnd_buf_init(&k);
    cnd_buf_init(&out);
    CHECK(cnd_secagg_server_keys_msg(r.srv, &k, 0) == 0);
    /* client 1's s pk (advert 0 of the KEYS message is client 0's own) */
    k.data[CND_SECAGG_HDR_BYTES + 4 + S_SA_ADVERT_BYTES + CND_SECAGG_HDR_BYTES + 64 + 5] ^= 1;
    CHECK_EQ_INT(cnd_secagg_client_share_keys(r.cl[0], &out, k.data, k.len), CND_ECRYPTO);
    CHECK(strstr(cnd_err_detail(), "signature") != NULL);
    cnd_buf_free(&k);
    cnd_buf_free(&out);
    r_free(&r);

    /* Keys from round 6 replayed into round 7 (same clients, same identities). */
    r_init(&old, 4, 16, 16, 0, 6, 1);
    r_init(&r, 4, 16, 16, 0, 7, 1);
    CHECK(r_phase1(&old) == 0 && r_phase1(&r) == 0);
    cnd_buf_t ko;
    cnd_buf_init(&ko);
    cnd_buf_init(&k);
    cnd_buf_init(&out);
    CHECK(cnd_secagg_server_keys_msg(old.srv, &ko, 0) == 0);
    CHECK(cnd_secagg_server_keys_msg(r.srv, &k, 0) == 0);
    CHECK(ko.len == k.len);
    /* Replace round 7's advert of client 1 by round 6's. */
    size_t a0 = CND_SECAGG_HDR_BYTES + 4 + S_SA_ADVERT_BYTES;
    memcpy(k.data + a0, ko.data + a0, S_SA_ADVERT_BYTES);
    CHECK_EQ_INT(cnd_secagg_client_share_keys(r.cl[0], &out, k.data, k.len), CND_ECRYPTO);
    CHECK(strstr(cnd_err_detail(), "replayed") != NULL);
    /* ... and with its round number rewritten to 7, the signature no longer verifies. */
    r_free(&r);
    r_init(&r, 4, 16, 16, 0, 7, 1);
    CHECK(r_phase1(&r) == 0);
    k.len = 0;
    CHECK(cnd_secagg_server_keys_msg(r.srv, &k, 0) == 0);
    memcpy(k.data + a0, ko.data + a0, S_SA_ADVERT_BYTES);
    for (int i = 0; i < 8; i++) k.data[a0 + 5 + i] = (uint8_t)(r.p.round_id >> (8 * i));
    out.len = 0;
    CHECK_EQ_INT(cnd_secagg_client_share_keys(r.cl[0], &out, k.data, k.len), CND_ECRYPTO);
    CHECK(strstr(cnd_err_detail(), "signature") != NULL);
    /* The server refuses the old advert too. */
    cnd_buf_init(&b);
    r_free(&r);
    r_init(&r, 4, 16, 16, 0, 7, 1);
    CHECK_EQ_INT(cnd_secagg_server_add_advert(r.srv, 1, ko.data + a0, S_SA_ADVERT_BYTES),
                 CND_EPROTO);
    CHECK(strstr(cnd_err_detail(), "round 1006") != NULL);
    cnd_buf_free(&b);
    cnd_buf_free(&ko);
    cnd_buf_free(&k);
    cnd_buf_free(&out);
    r_free(&r);
    r_free(&old);

    /* An identity that is not the roster's at its index: the client will not start, and keys
     * made under another roster are refused by the server. */
    r_init(&r, 4, 16, 16, 0, 80, 1);
    cnd_identity_t *stranger = NULL;
    CHECK(cnd_identity_generate(&stranger) == 0);
    cnd_secagg_client_t *fake = NULL;
    CHECK_EQ_INT(cnd_secagg_client_new(&fake, &r.p, 2, stranger, r.roster), CND_EINVAL);
    cnd_secagg_member_t alt[4];
    memcpy(alt, r.roster, sizeof alt);
    memcpy(alt[2].id_pk, cnd_identity_pk(stranger), 32);
    CHECK(cnd_secagg_client_new(&fake, &r.p, 2, stranger, alt) == 0);
    cnd_buf_init(&b);
    CHECK(cnd_secagg_client_advertise(fake, &b) == 0);
    CHECK_EQ_INT(cnd_secagg_server_add_advert(r.srv, 2, b.data, b.len), CND_ECRYPTO);
    CHECK(strstr(cnd_err_detail(), "not the identity the round's roster names") != NULL);
    /* Client 0's identity cannot sit at index 3, and a roster naming it twice is refused. */
    cnd_secagg_client_t *twin = NULL;
    CHECK_EQ_INT(cnd_secagg_client_new(&twin, &r.p, 3, r.ids[0], r.roster), CND_EINVAL);
    memcpy(alt, r.roster, sizeof alt);
    memcpy(alt[3].id_pk, alt[0].id_pk, 32);
    CHECK_EQ_INT(cnd_secagg_client_new(&twin, &r.p, 3, r.ids[0], alt), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "same identity") != NULL);
    cnd_secagg_server_t *srv2 = NULL;
    CHECK_EQ_INT(cnd_secagg_server_new(&srv2, &r.p, alt, 1), CND_EINVAL);
    /* The certificate digest is part of D: a roster differing only there signs differently. */
    uint8_t d1[32], d2[32];
    memcpy(alt, r.roster, sizeof alt);
    alt[1].cert_sha256[7] ^= 1;
    cnd_sa_params_digest(d1, &r.p, r.roster);
    cnd_sa_params_digest(d2, &r.p, alt);
    CHECK(memcmp(d1, d2, 32) != 0);
    cnd_buf_free(&b);
    cnd_secagg_client_destroy(&fake);
    cnd_identity_destroy(&stranger);
    r_free(&r);

    /* A KEYS message that moves adverts between indices, or leaves a participant out. */
    r_init(&r, 4, 16, 16, 0, 81, 1);
    CHECK(r_phase1(&r) == 0);
    cnd_buf_init(&k);
    cnd_buf_init(&out);
    CHECK(cnd_secagg_server_keys_msg(r.srv, &k, 0) == 0);
    uint8_t sw[S_SA_ADVERT_BYTES];
    size_t e1 = CND_SECAGG_HDR_BYTES + 4 + S_SA_ADVERT_BYTES, e2 = e1 + S_SA_ADVERT_BYTES;
    memcpy(sw, k.data + e1, sizeof sw);
    memcpy(k.data + e1, k.data + e2, sizeof sw);
    memcpy(k.data + e2, sw, sizeof sw);
    CHECK_EQ_INT(cnd_secagg_client_share_keys(r.cl[0], &out, k.data, k.len), CND_EPROTO);
    CHECK(strstr(cnd_err_detail(), "advert 1 of the KEYS message is client 2's") != NULL);
    k.len = 0;
    CHECK(cnd_secagg_server_keys_msg(r.srv, &k, 1) == 0);
    k.len -= S_SA_ADVERT_BYTES;
    cnd_st_le32(k.data + CND_SECAGG_HDR_BYTES, 3);
    CHECK_EQ_INT(cnd_secagg_client_share_keys(r.cl[1], &out, k.data, k.len), CND_EPROTO);
    CHECK(strstr(cnd_err_detail(), "all 4 participants") != NULL);
    k.len = 0;
    CHECK(cnd_secagg_server_keys_msg(r.srv, &k, 2) == 0);
    k.data[CND_SECAGG_HDR_BYTES + 4 + 2 * S_SA_ADVERT_BYTES + 40] ^= 1; /* client 2's own keys */
    CHECK_EQ_INT(cnd_secagg_client_share_keys(r.cl[2], &out, k.data, k.len), CND_ECRYPTO);
    CHECK(strstr(cnd_err_detail(), "own keys") != NULL);
    cnd_buf_free(&k);
    cnd_buf_free(&out);
    r_free(&r);
}

/* The neighbour graph: the server and every client derive it from the n adverts, so the same
 * round parameters (the coordinator's round seed included) give a different graph with every
 * set of fresh client keys, and the coordinator cannot pick a victim's neighbours alone. */
static void test_graph_from_adverts(void)
{
    uint32_t nb_first[2][32], k = 0;
    for (int run = 0; run < 2; run++) {
        round_t r;
        r_init(&r, 40, 8, 16, 6, 300, 1); /* identical parameters and roster in both runs */
        CHECK(r_phase1(&r) == 0);
        cnd_buf_t kb;
        cnd_buf_init(&kb);
        CHECK(cnd_secagg_server_keys_msg(r.srv, &kb, 0) == 0);
        uint8_t D[32], gs[32];
        cnd_sa_params_digest(D, &r.p, r.roster);
        cnd_sa_graph_seed(gs, D, kb.data + CND_SECAGG_HDR_BYTES + 4, r.n);
        cnd_secagg_graph_t *g = NULL;
        CHECK(cnd_secagg_graph_new(&g, &r.p, gs) == 0);
        const uint32_t *nb = g ? cnd_secagg_graph_neighbours(g, 0, &k) : NULL;
        for (uint32_t j = 0; nb && j < k && j < 32; j++) nb_first[run][j] = nb[j];
        cnd_secagg_graph_destroy(&g);
        cnd_buf_free(&kb);
        CHECK_EQ_INT(r_run_from2(&r), 0); /* and the round completes on that graph */
        r_free(&r);
    }
    CHECK_EQ_INT(k, 7);
    CHECK(memcmp(nb_first[0], nb_first[1], k * sizeof(uint32_t)) != 0);
}

/* Bad messages to the server are refused and change nothing; the round then completes. */
static void test_server_refusals(void)
{
    round_t r;
    r_init(&r, 4, 100, 16, 0, 90, 1);
    cnd_buf_t b;
    cnd_buf_init(&b);
    CHECK(cnd_secagg_client_advertise(r.cl[0], &b) == 0);
    CHECK_EQ_INT(cnd_secagg_server_add_advert(r.srv, 1, b.data, b.len), CND_EPROTO); /* sender */
    CHECK_EQ_INT(cnd_secagg_server_add_advert(r.srv, 0, b.data, b.len - 1), CND_EPROTO);
    CHECK_EQ_INT(cnd_secagg_server_add_advert(r.srv, 9, b.data, b.len), CND_EPROTO);
    CHECK_EQ_INT(cnd_secagg_server_add_masked(r.srv, 0, b.data, b.len), CND_ESTATE); /* phase */
    CHECK_EQ_INT(cnd_secagg_server_status(r.srv)[0], 0);
    CHECK(cnd_secagg_server_add_advert(r.srv, 0, b.data, b.len) == 0);
    CHECK_EQ_INT(cnd_secagg_server_add_advert(r.srv, 0, b.data, b.len), CND_EPROTO); /* dup */
    cnd_buf_free(&b);
    for (uint32_t u = 1; u < 4; u++) {
        cnd_buf_init(&b);
        CHECK(cnd_secagg_client_advertise(r.cl[u], &b) == 0);
        CHECK(cnd_secagg_server_add_advert(r.srv, u, b.data, b.len) == 0);
        cnd_buf_free(&b);
    }
    CHECK(cnd_secagg_server_end_adverts(r.srv) == 0);
    CHECK(r_phase2(&r) == 0);
    /* Masked vectors: truncated, wrong width, nonzero padding are refused; sum unaffected. */
    for (uint32_t u = 0; u < 4; u++) {
        cnd_buf_t k, m;
        cnd_buf_init(&k);
        cnd_buf_init(&m);
        CHECK(cnd_secagg_server_shares_msg(r.srv, &k, u) == 0);
        CHECK(cnd_secagg_client_mask(r.cl[u], &m, k.data, k.len, r.x[u]) == 0);
        CHECK_EQ_INT(cnd_secagg_server_add_masked(r.srv, u, m.data, m.len - 1), CND_EPROTO);
        m.data[CND_SECAGG_HDR_BYTES + 4] = 15; /* bits */
        CHECK_EQ_INT(cnd_secagg_server_add_masked(r.srv, u, m.data, m.len), CND_EPROTO);
        m.data[CND_SECAGG_HDR_BYTES + 4] = 16;
        CHECK(cnd_secagg_server_add_masked(r.srv, u, m.data, m.len) == 0);
        CHECK_EQ_INT(cnd_secagg_server_add_masked(r.srv, u, m.data, m.len), CND_EPROTO);
        cnd_buf_free(&k);
        cnd_buf_free(&m);
    }
    CHECK(cnd_secagg_server_end_masked(r.srv) == 0);
    /* A consistency signature over other sets, or from another client, is refused. */
    cnd_buf_t cq, cs;
    cnd_buf_init(&cq);
    cnd_buf_init(&cs);
    CHECK(cnd_secagg_server_consistency_msg(r.srv, &cq, 1) == 0);
    CHECK(cnd_secagg_client_consistency(r.cl[1], &cs, cq.data, cq.len) == 0);
    CHECK_EQ_INT(cnd_secagg_server_add_consistency(r.srv, 2, cs.data, cs.len), CND_EPROTO);
    cs.data[CND_SECAGG_HDR_BYTES + 3] ^= 1;
    CHECK_EQ_INT(cnd_secagg_server_add_consistency(r.srv, 1, cs.data, cs.len), CND_ECRYPTO);
    cs.data[CND_SECAGG_HDR_BYTES + 3] ^= 1;
    CHECK(cnd_secagg_server_add_consistency(r.srv, 1, cs.data, cs.len) == 0);
    cnd_buf_free(&cq);
    cnd_buf_free(&cs);
    CHECK(r_phase4(&r) == 0); /* the others sign */
    /* Unmask answers that do not match the request are refused. */
    cnd_buf_t q, a;
    cnd_buf_init(&q);
    cnd_buf_init(&a);
    CHECK(cnd_secagg_server_unmask_msg(r.srv, &q, 0) == 0);
    CHECK(cnd_secagg_client_unmask(r.cl[0], &a, q.data, q.len) == 0);
    a.data[CND_SECAGG_HDR_BYTES + 4 + 4] = S_SA_SHARE_MASKKEY; /* wrong kind for an alive peer */
    CHECK_EQ_INT(cnd_secagg_server_add_unmask(r.srv, 0, a.data, a.len), CND_EPROTO);
    a.data[CND_SECAGG_HDR_BYTES + 4 + 4] = S_SA_SHARE_SEED;
    CHECK(cnd_secagg_server_add_unmask(r.srv, 0, a.data, a.len) == 0);
    cnd_buf_free(&q);
    cnd_buf_free(&a);
    r_phase5(&r, 1);
    uint32_t sum[100];
    CHECK_EQ_INT(cnd_secagg_server_finish(r.srv, sum), 0);
    CHECK(r_check_sum(&r, sum));
    CHECK_EQ_INT(cnd_secagg_server_finish(r.srv, sum), CND_ESTATE); /* once */
    r_free(&r);
}

/* A bad share returned at unmask is caught by the commitment / public key check. */
static void test_bad_share_detected(void)
{
    for (int which = 0; which < 2; which++) {
        round_t r;
        r_init(&r, 5, 20, 16, 0, 100 + (uint64_t)which, 1);
        r.drop[4] = DROP_MASKED;
        CHECK(r_phase1(&r) == 0 && r_phase2(&r) == 0 && r_phase3(&r) == 0 && r_phase4(&r) == 0);
        const uint8_t *st = cnd_secagg_server_status(r.srv);
        for (uint32_t u = 0; u < 5; u++) {
            if (!(st[u] & CND_SECAGG_ST_MASKED)) continue;
            cnd_buf_t q, a;
            cnd_buf_init(&q);
            cnd_buf_init(&a);
            CHECK(cnd_secagg_server_unmask_msg(r.srv, &q, u) == 0);
            CHECK(cnd_secagg_client_unmask(r.cl[u], &a, q.data, q.len) == 0);
            if (u == 0) {
                /* entries ascend by owner: first is owner 0 (seed), last is owner 4 (mask key) */
                size_t e = CND_SECAGG_HDR_BYTES + 4;
                size_t last = e + (cnd_le32(a.data + CND_SECAGG_HDR_BYTES) - 1) * 37;
                a.data[(which == 0 ? e : last) + 5 + 3] ^= 0x40;
            }
            CHECK(cnd_secagg_server_add_unmask(r.srv, u, a.data, a.len) == 0);
            cnd_buf_free(&q);
            cnd_buf_free(&a);
        }
        uint32_t sum[20];
        CHECK_EQ_INT(cnd_secagg_server_finish(r.srv, sum), CND_ECRYPTO);
        CHECK(strstr(cnd_err_detail(), which == 0 ? "commitment" : "public key") != NULL);
        r_free(&r);
    }
}

/* Masked vectors look nothing like the input and differ between rounds for the same input. */
static void test_masking_hides(void)
{
    round_t r;
    r_init(&r, 3, 4096, 16, 0, 120, 1);
    for (uint32_t u = 0; u < 3; u++) memset(r.x[u], 0, 4096 * 4);
    CHECK(r_phase1(&r) == 0 && r_phase2(&r) == 0);
    cnd_buf_t k, m;
    cnd_buf_init(&k);
    cnd_buf_init(&m);
    CHECK(cnd_secagg_server_shares_msg(r.srv, &k, 0) == 0);
    CHECK(cnd_secagg_client_mask(r.cl[0], &m, k.data, k.len, r.x[0]) == 0);
    /* a zero input masked: about as many of each byte value as a uniform stream */
    size_t zeros = 0, body = CND_SECAGG_HDR_BYTES + 5;
    CHECK_EQ_INT(m.len, body + 4096 * 2);
    for (size_t i = body; i < m.len; i++) zeros += m.data[i] == 0;
    CHECK(zeros < 80); /* expectation 32 */
    cnd_buf_free(&k);
    cnd_buf_free(&m);
    r_free(&r);
    /* Out-of-range input is refused without aborting the client. */
    r_init(&r, 3, 10, 12, 0, 121, 1);
    CHECK(r_phase1(&r) == 0 && r_phase2(&r) == 0);
    cnd_buf_init(&k);
    cnd_buf_init(&m);
    CHECK(cnd_secagg_server_shares_msg(r.srv, &k, 1) == 0);
    r.x[1][3] = 1u << 12;
    CHECK_EQ_INT(cnd_secagg_client_mask(r.cl[1], &m, k.data, k.len, r.x[1]), CND_ERANGE);
    r.x[1][3] = 5;
    CHECK_EQ_INT(cnd_secagg_client_mask(r.cl[1], &m, k.data, k.len, r.x[1]), 0);
    cnd_buf_free(&k);
    cnd_buf_free(&m);
    r_free(&r);
}

static void test_params(void)
{
    cnd_secagg_params_t p;
    memset(&p, 0, sizeof p);
    p.n = 500;
    p.len = 10;
    p.bits = 16;
    CHECK(cnd_secagg_params_fill(&p) == 0);
    CHECK_EQ_INT(p.degree, 18);
    CHECK_EQ_INT(p.threshold, 10);
    CHECK_EQ_INT(p.min_survivors, 251); /* strict majority of 500 */
    cnd_buf_t b;
    cnd_buf_init(&b);
    CHECK(cnd_secagg_params_encode(&b, &p) == 0);
    CHECK_EQ_INT(b.len, 4 + 8 + 32 + 24);
    cnd_secagg_params_t q;
    CHECK(cnd_secagg_params_decode(&q, b.data, b.len) == 0);
    CHECK(memcmp(&p, &q, sizeof p) == 0);
    b.data[4 + 8 + 32 + 8] = 3; /* threshold 3 < majority */
    CHECK_EQ_INT(cnd_secagg_params_decode(&q, b.data, b.len), CND_EFORMAT);
    cnd_buf_free(&b);
    cnd_secagg_params_t bad = p;
    bad.threshold = 9; /* not a strict majority of 19 */
    CHECK_EQ_INT(cnd_secagg_params_fill(&bad), CND_EINVAL);
    bad = p;
    bad.degree = 7;
    CHECK_EQ_INT(cnd_secagg_params_fill(&bad), CND_EINVAL);
    bad = p;
    bad.degree = 300;
    bad.threshold = 0;
    CHECK_EQ_INT(cnd_secagg_params_fill(&bad), CND_EINVAL); /* k > 255 */
    bad = p;
    bad.n = 1;
    CHECK_EQ_INT(cnd_secagg_params_fill(&bad), CND_EINVAL);
    bad = p;
    bad.bits = 33;
    CHECK_EQ_INT(cnd_secagg_params_fill(&bad), CND_EINVAL);
    /* Message header peek. */
    uint8_t hdr[CND_SECAGG_HDR_BYTES];
    cnd_buf_t hb = {hdr, 0, sizeof hdr, 0};
    cnd_sa_hdr_put(&hb, CND_SECAGG_MASKED, 77, 5, CND_SECAGG_SERVER);
    cnd_secagg_hdr_t h;
    CHECK(cnd_secagg_peek(&h, hdr, sizeof hdr) == 0);
    CHECK(h.type == CND_SECAGG_MASKED && h.round_id == 77 && h.from == 5 &&
          h.to == CND_SECAGG_SERVER);
    CHECK_EQ_INT(cnd_secagg_peek(&h, hdr, sizeof hdr - 1), CND_EFORMAT);
    hdr[4] = 10;
    CHECK_EQ_INT(cnd_secagg_peek(&h, hdr, sizeof hdr), CND_EFORMAT);
}

/* `condenser bench secagg` end to end on a small round (it checks its own sum exactly). */
static void test_bench_command(void)
{
    const char *bin = getenv("CND_BIN");
    if (!bin) {
        fprintf(stderr, "CND_BIN not set; skipping the command test\n");
        return;
    }
    char cmd[512], out[4096];
    snprintf(cmd, sizeof cmd,
             "%s bench secagg --clients 12 --values 3000 --dropout 0.25 --samples 2 --json 2>&1",
             bin);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = 0;
    CHECK(p && pclose(p) == 0);
    CHECK(strstr(out, "\"sum_ok\": true") != NULL);
    CHECK(strstr(out, "\"clients\": 12, \"values\": 3000") != NULL);
    CHECK(strstr(out, "\"dropped\": 3") != NULL);
    snprintf(cmd, sizeof cmd, "%s bench secagg --clients 2 2>&1", bin);
    p = popen(cmd, "r");
    n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = 0;
    CHECK(p && pclose(p) != 0);
    CHECK(strstr(out, "--clients") != NULL);
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    test_params();
    test_small_complete();
    test_default_degree();
    test_sparse();
    test_below_threshold();
    test_refuse_both();
    test_inconsistent_sets();
    test_ddp_floor();
    test_tampered_shares();
    test_forged_and_replayed_keys();
    test_graph_from_adverts();
    test_server_refusals();
    test_bad_share_detected();
    test_masking_hides();
    test_bench_command();
    return check_result("test_secagg");
}
