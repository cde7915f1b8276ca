/*
 * secagg_common.c: round parameters, the neighbour graph, message headers, the derivations of
 * secagg_internal.h, and the threaded mask applier shared by client and server.
 *
 * Graph: with h = degree/2, clients are placed on a ring in the order of a permutation drawn from
 * the graph seed, and each is joined to the h clients on either side (a Harary graph under a
 * random relabelling, as in SecAgg+). When 2h >= n-1 the graph is complete. The graph seed is a
 * hash over every participant's advert (fresh random keys of each site), fixed only once all
 * adverts are in: the coordinator cannot choose it alone (docs/threat-model.md).
 */
#include "secagg_internal.h"
#include "digest.h"
#include "hkdf.h"
#include "prg.h"
#include "sign.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define S_PARAMS_MAGIC "CSP1"
#define S_PARAMS_BYTES (4 + 8 + 32 + 6 * 4)

uint32_t cnd_secagg_default_degree(uint32_t n)
{
    if (n < 2) return 0;
    uint32_t lg = 0;
    while (lg < 32 && ((uint64_t)1 << lg) < n) lg++;
    uint32_t d = 2 * lg;
    return d >= n - 1 ? n - 1 : d;
}

/* log P(X < t) for X ~ Bin(d, p), computed by summing terms in log space. */
static double s_binom_lower_tail(uint32_t d, double p, uint32_t t)
{
    if (t == 0) return 0;
    if (p <= 0) return 1;
    double sum = 0;
    for (uint32_t i = 0; i < t && i <= d; i++) {
        double lt = lgamma(d + 1.0) - lgamma(i + 1.0) - lgamma(d - i + 1.0) + i * log(p) +
                    (d - i) * (p < 1 ? log1p(-p) : -INFINITY);
        sum += exp(lt);
    }
    return sum;
}

uint32_t cnd_secagg_degree_for_dropout(uint32_t n, double dropout, double fail_prob)
{
    if (n < 2) return 0;
    uint32_t d = cnd_secagg_default_degree(n);
    for (;;) {
        if (d >= n - 1) return n - 1;
        uint32_t k = d + 1, t = k / 2 + 1;
        /* A dropped client needs t of its d neighbours to answer. */
        double tail = s_binom_lower_tail(d, 1.0 - dropout, t);
        if ((double)n * tail <= fail_prob) return d;
        d += 2;
        if (d + 1 > CND_SECAGG_MAX_K) return n - 1 <= CND_SECAGG_MAX_K - 1 ? n - 1 : d - 2;
    }
}

int cnd_secagg_params_fill(cnd_secagg_params_t *p)
{
    if (p->n < 2 || p->n > CND_SECAGG_MAX_CLIENTS)
        return cnd_errf(CND_EINVAL, "secagg params: n = %u outside [2, %d]", p->n,
                        CND_SECAGG_MAX_CLIENTS);
    if (p->degree == 0) p->degree = cnd_secagg_default_degree(p->n);
    if (p->degree >= p->n - 1) p->degree = p->n - 1;
    if (p->degree != p->n - 1 && (p->degree % 2 || p->degree < 2))
        return cnd_errf(CND_EINVAL,
                        "secagg params: degree %u must be even (or n-1 = %u for everyone)",
                        p->degree, p->n - 1);
    uint32_t k = p->degree + 1;
    if (k > CND_SECAGG_MAX_K)
        return cnd_errf(CND_EINVAL, "secagg params: neighbourhood of %u exceeds %d", k,
                        CND_SECAGG_MAX_K);
    if (p->threshold == 0) p->threshold = k / 2 + 1;
    if (p->threshold < k / 2 + 1 || p->threshold > k)
        return cnd_errf(CND_EINVAL,
                        "secagg params: threshold %u must be a strict majority of the "
                        "neighbourhood, in [%u, %u]",
                        p->threshold, k / 2 + 1, k);
    uint32_t floor_ms = p->threshold > p->n / 2 + 1 ? p->threshold : p->n / 2 + 1;
    if (p->min_survivors == 0) p->min_survivors = floor_ms;
    if (p->min_survivors < floor_ms || p->min_survivors > p->n)
        return cnd_errf(CND_EINVAL,
                        "secagg params: min_survivors %u outside [%u, %u] (at least the threshold "
                        "and a strict majority of the clients)",
                        p->min_survivors, floor_ms, p->n);
    if (p->len == 0) return cnd_errf(CND_EINVAL, "secagg params: vector length is 0");
    if (p->bits < 1 || p->bits > 32)
        return cnd_errf(CND_EINVAL, "secagg params: ring width %u outside [1, 32]", p->bits);
    return 0;
}

int cnd_secagg_params_encode(cnd_buf_t *out, const cnd_secagg_params_t *p)
{
    cnd_buf_put(out, S_PARAMS_MAGIC, 4);
    cnd_buf_u64(out, p->round_id);
    cnd_buf_put(out, p->round_seed, 32);
    cnd_buf_u32(out, p->n);
    cnd_buf_u32(out, p->degree);
    cnd_buf_u32(out, p->threshold);
    cnd_buf_u32(out, p->min_survivors);
    cnd_buf_u32(out, p->len);
    cnd_buf_u32(out, p->bits);
    return out->err ? cnd_errf(CND_ENOMEM, "out of memory") : 0;
}

int cnd_secagg_params_decode(cnd_secagg_params_t *p, const uint8_t *data, size_t len)
{
    memset(p, 0, sizeof *p);
    if (len != S_PARAMS_BYTES || memcmp(data, S_PARAMS_MAGIC, 4) != 0)
        return cnd_errf(CND_EFORMAT, "secagg params: expected %d bytes starting with CSP1",
                        S_PARAMS_BYTES);
    cnd_rd_t r;
    cnd_rd_init(&r, data + 4, len - 4);
    p->round_id = cnd_rd_u64(&r);
    memcpy(p->round_seed, cnd_rd_take(&r, 32), 32);
    p->n = cnd_rd_u32(&r);
    p->degree = cnd_rd_u32(&r);
    p->threshold = cnd_rd_u32(&r);
    p->min_survivors = cnd_rd_u32(&r);
    p->len = cnd_rd_u32(&r);
    p->bits = cnd_rd_u32(&r);
    /* Canonical: every field explicit (no defaults left to fill). */
    cnd_secagg_params_t f = *p;
    int rc = cnd_secagg_params_fill(&f);
    if (!rc && memcmp(&f, p, sizeof f) != 0)
        rc = cnd_errf(CND_EFORMAT, "secagg params: fields are not in canonical (filled) form");
    if (rc) memset(p, 0, sizeof *p);
    return rc ? (rc == CND_EINVAL ? CND_EFORMAT : rc) : 0;
}

void cnd_sa_params_digest(uint8_t d[32], const cnd_secagg_params_t *p,
                          const cnd_secagg_member_t *roster)
{
    static const char label[] = "condenser-secagg-roster-v1";
    uint8_t b[S_PARAMS_BYTES];
    cnd_buf_t buf = {b, 0, sizeof b, 0}; /* fixed-size: never reallocates */
    memcpy(b, S_PARAMS_MAGIC, 4);
    buf.len = 4;
    cnd_buf_u64(&buf, p->round_id);
    cnd_buf_put(&buf, p->round_seed, 32);
    cnd_buf_u32(&buf, p->n);
    cnd_buf_u32(&buf, p->degree);
    cnd_buf_u32(&buf, p->threshold);
    cnd_buf_u32(&buf, p->min_survivors);
    cnd_buf_u32(&buf, p->len);
    cnd_buf_u32(&buf, p->bits);
    cnd_sha256_t *h = cnd_sha256_new();
    if (!h) { /* OOM in OpenSSL: a zero digest matches no peer's, so the round fails */
        memset(d, 0, 32);
        return;
    }
    cnd_sha256_update(h, b, sizeof b);
    cnd_sha256_update(h, label, sizeof label - 1);
    for (uint32_t u = 0; u < p->n; u++) {
        cnd_sha256_update(h, roster[u].id_pk, 32);
        cnd_sha256_update(h, roster[u].cert_sha256, 32);
    }
    cnd_sha256_final(h, d);
    cnd_sha256_destroy(&h);
}

int cnd_sa_roster_check(const cnd_secagg_member_t *roster, uint32_t n)
{
    for (uint32_t u = 0; u < n; u++)
        for (uint32_t v = u + 1; v < n; v++)
            if (sodium_memcmp(roster[u].id_pk, roster[v].id_pk, 32) == 0)
                return cnd_errf(CND_EINVAL,
                                "secagg roster: participants %u and %u have the same identity", u,
                                v);
    return 0;
}

void cnd_sa_graph_seed(uint8_t out[32], const uint8_t D[32], const uint8_t *adverts, uint32_t n)
{
    static const char label[] = "condenser-secagg-graph-v2";
    cnd_sha256_t *h = cnd_sha256_new();
    if (!h) {
        memset(out, 0, 32);
        return;
    }
    cnd_sha256_update(h, label, sizeof label - 1);
    cnd_sha256_update(h, D, 32);
    cnd_sha256_update(h, adverts, (size_t)n * S_SA_ADVERT_BYTES);
    cnd_sha256_final(h, out);
    cnd_sha256_destroy(&h);
}

int cnd_secagg_peek(cnd_secagg_hdr_t *h, const uint8_t *msg, size_t len)
{
    memset(h, 0, sizeof *h);
    cnd_rd_t r;
    cnd_rd_init(&r, msg, len);
    const uint8_t *m = cnd_rd_take(&r, 4);
    h->type = cnd_rd_u8(&r);
    h->round_id = cnd_rd_u64(&r);
    h->from = cnd_rd_u32(&r);
    h->to = cnd_rd_u32(&r);
    if (r.err || memcmp(m, S_SA_MAGIC, 4) != 0 || h->type < CND_SECAGG_ADVERT ||
        h->type > CND_SECAGG_UNMASK) {
        memset(h, 0, sizeof *h);
        return cnd_errf(CND_EFORMAT, "secagg message: bad or truncated header");
    }
    return 0;
}

void cnd_sa_hdr_put(cnd_buf_t *b, uint8_t type, uint64_t round, uint32_t from, uint32_t to)
{
    cnd_buf_put(b, S_SA_MAGIC, 4);
    cnd_buf_u8(b, type);
    cnd_buf_u64(b, round);
    cnd_buf_u32(b, from);
    cnd_buf_u32(b, to);
}

static const char *s_type_name(unsigned t)
{
    static const char *names[] = {"?",          "ADVERT", "KEYS",        "SHARES",
                                  "SHARES_FOR", "MASKED", "CONSIST_REQ", "CONSISTENCY",
                                  "UNMASK_REQ", "UNMASK"};
    return t < 10 ? names[t] : "?";
}

int cnd_sa_hdr_expect(cnd_rd_t *r, cnd_secagg_hdr_t *h, uint8_t type, uint64_t round, uint32_t to,
                      const char *who)
{
    const uint8_t *start = cnd_rd_take(r, CND_SECAGG_HDR_BYTES);
    if (!start || cnd_secagg_peek(h, start, CND_SECAGG_HDR_BYTES) != 0)
        return cnd_errf(CND_EPROTO, "%s: not a secure-aggregation message", who);
    if (h->type != type)
        return cnd_errf(CND_EPROTO, "%s: expected a %s message, got %s", who, s_type_name(type),
                        s_type_name(h->type));
    if (h->round_id != round)
        return cnd_errf(CND_EPROTO, "%s: message is for round %llu, this is round %llu", who,
                        (unsigned long long)h->round_id, (unsigned long long)round);
    if (h->to != to)
        return cnd_errf(CND_EPROTO, "%s: message is addressed to %u, not %u", who, h->to, to);
    return 0;
}

void cnd_sa_advert_signed(uint8_t out[32 + 4 + 4 * 32], const uint8_t D[32], uint32_t u,
                          const uint8_t id_pk[32], const uint8_t c_pk[32], const uint8_t s_pk[32],
                          const uint8_t commit[32])
{
    memcpy(out, D, 32);
    cnd_st_le32(out + 32, u);
    memcpy(out + 36, id_pk, 32);
    memcpy(out + 68, c_pk, 32);
    memcpy(out + 100, s_pk, 32);
    memcpy(out + 132, commit, 32);
}

void cnd_sa_survivors_digest(uint8_t out[32], const uint8_t D[32], uint32_t n, const uint8_t *u2,
                             const uint8_t *u3)
{
    static const char label[] = "condenser-secagg-survivors-v1";
    uint8_t nb[4];
    cnd_st_le32(nb, n);
    cnd_sha256_t *h = cnd_sha256_new();
    if (!h) { /* cannot happen short of OOM in OpenSSL; a zero digest then matches nothing */
        memset(out, 0, 32);
        return;
    }
    cnd_sha256_update(h, label, sizeof label - 1);
    cnd_sha256_update(h, D, 32);
    cnd_sha256_update(h, nb, 4);
    cnd_sha256_update(h, u2, cnd_sa_bitmap_bytes(n));
    cnd_sha256_update(h, u3, cnd_sa_bitmap_bytes(n));
    cnd_sha256_final(h, out);
    cnd_sha256_destroy(&h);
}

void cnd_sa_consist_signed(uint8_t out[S_SA_CONSIST_SIGNED], const uint8_t D[32], uint32_t signer,
                           const uint8_t sdigest[32])
{
    memcpy(out, D, 32);
    cnd_st_le32(out + 32, signer);
    memcpy(out + 36, sdigest, 32);
}

void cnd_sa_commit(uint8_t out[32], const uint8_t D[32], uint32_t u, const uint8_t seed[32])
{
    static const char label[] = "condenser-secagg-commit-v1";
    uint8_t m[sizeof label - 1 + 32 + 4 + 32];
    memcpy(m, label, sizeof label - 1);
    memcpy(m + sizeof label - 1, D, 32);
    cnd_st_le32(m + sizeof label - 1 + 32, u);
    memcpy(m + sizeof label - 1 + 36, seed, 32);
    cnd_sha256(out, m, sizeof m);
    sodium_memzero(m, sizeof m);
}

int cnd_sa_pair_key(uint8_t out[32], const char *label, const uint8_t D[32], uint32_t u, uint32_t v,
                    const uint8_t my_sk[32], const uint8_t peer_pk[32])
{
    static const uint8_t salt[] = "condenser-secagg-v1";
    uint8_t shared[32], info[8 + 32 + 8];
    if (crypto_scalarmult(shared, my_sk, peer_pk) != 0) {
        sodium_memzero(shared, sizeof shared);
        return CND_ECRYPTO;
    }
    size_t ll = strlen(label);
    memset(info, 0, 8);
    memcpy(info, label, ll < 8 ? ll : 8);
    memcpy(info + 8, D, 32);
    cnd_st_le32(info + 40, u < v ? u : v);
    cnd_st_le32(info + 44, u < v ? v : u);
    int rc = cnd_hkdf_sha256(out, 32, salt, sizeof salt - 1, shared, 32, info, sizeof info);
    sodium_memzero(shared, sizeof shared);
    return rc;
}

void cnd_sa_share_ad(uint8_t out[S_SA_AD_BYTES], const uint8_t D[32], uint32_t from, uint32_t to)
{
    memcpy(out, "condenser-secagg-share-v1", 25);
    memcpy(out + 25, D, 32);
    cnd_st_le32(out + 57, from);
    cnd_st_le32(out + 61, to);
}

int cnd_sa_advert_parse(cnd_sa_advert_t *a, const uint8_t *msg, size_t len, uint64_t round,
                        const char *who)
{
    memset(a, 0, sizeof *a);
    cnd_secagg_hdr_t h;
    if (cnd_secagg_peek(&h, msg, len) != 0 || h.type != CND_SECAGG_ADVERT)
        return cnd_errf(CND_EPROTO, "%s: not an ADVERT message", who);
    if (h.round_id != round)
        return cnd_errf(CND_ECRYPTO,
                        "%s: keys of client %u were made for round %llu, not this round %llu "
                        "(replayed)",
                        who, h.from, (unsigned long long)h.round_id, (unsigned long long)round);
    if (h.to != CND_SECAGG_SERVER || len != S_SA_ADVERT_BYTES)
        return cnd_errf(CND_EPROTO, "%s: malformed ADVERT from client %u (%zu bytes)", who, h.from,
                        len);
    const uint8_t *b = msg + CND_SECAGG_HDR_BYTES;
    a->from = h.from;
    a->id_pk = b;
    a->enc_pk = b + 32;
    a->mask_pk = b + 64;
    a->commit = b + 96;
    a->sig = b + 128;
    return 0;
}

int cnd_sa_advert_verify(const cnd_sa_advert_t *a, const uint8_t D[32],
                         const cnd_secagg_member_t *roster, uint32_t n)
{
    char fp[CND_FINGERPRINT_HEX];
    if (a->from >= n || sodium_memcmp(roster[a->from].id_pk, a->id_pk, 32) != 0)
        return cnd_errf(CND_ECRYPTO,
                        "client %u advertised keys under identity SHA256:%.16s..., which is not "
                        "the identity the round's roster names at that index",
                        a->from, cnd_pubkey_fingerprint(fp, a->id_pk));
    uint8_t m[32 + 4 + 4 * 32];
    cnd_sa_advert_signed(m, D, a->from, a->id_pk, a->enc_pk, a->mask_pk, a->commit);
    if (cnd_verify(a->sig, a->id_pk, "secagg-advert", m, sizeof m) != 0)
        return cnd_errf(CND_ECRYPTO,
                        "client %u: signature on its round keys does not verify (forged, altered "
                        "or made for other round parameters or another roster)",
                        a->from);
    return 0;
}

/* --- graph -------------------------------------------------------------------------------- */

struct cnd_secagg_graph {
    uint32_t n, k; /* clients, neighbourhood size (incl. self) */
    uint32_t *nb;  /* n rows of k ascending indices */
};

static int s_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int cnd_secagg_graph_new(cnd_secagg_graph_t **out, const cnd_secagg_params_t *p,
                         const uint8_t gseed[32])
{
    *out = NULL;
    cnd_secagg_params_t f = *p;
    int rc = cnd_secagg_params_fill(&f);
    if (rc) return rc;
    cnd_secagg_graph_t *g = calloc(1, sizeof *g);
    uint32_t *perm = malloc((size_t)f.n * sizeof *perm);
    if (!g || !perm || !(g->nb = malloc((size_t)f.n * (f.degree + 1) * sizeof(uint32_t)))) {
        free(perm);
        cnd_secagg_graph_destroy(&g);
        return cnd_errf(CND_ENOMEM, "out of memory for the neighbour graph");
    }
    g->n = f.n;
    g->k = f.degree + 1;
    if (f.degree == f.n - 1) {
        for (uint32_t u = 0; u < f.n; u++)
            for (uint32_t j = 0; j < f.n; j++) g->nb[(size_t)u * g->k + j] = j;
        free(perm);
        *out = g;
        return 0;
    }
    /* Fisher-Yates with rejection sampling over the keystream of the graph seed. */
    uint8_t seed[32], ks[4096];
    memcpy(seed, gseed, 32);
    cnd_prg_t *prg = cnd_prg_new(CND_PRG_MASK);
    if (!prg) {
        free(perm);
        cnd_secagg_graph_destroy(&g);
        return CND_ECRYPTO;
    }
    uint64_t off = 0;
    size_t pos = sizeof ks;
    for (uint32_t i = 0; i < f.n; i++) perm[i] = i;
    for (uint32_t i = f.n - 1; i > 0 && !rc; i--) {
        uint64_t bound = (uint64_t)i + 1, limit = (((uint64_t)1 << 32) / bound) * bound;
        uint32_t r = 0;
        for (;;) {
            if (pos == sizeof ks) {
                if ((rc = cnd_prg_keystream(prg, ks, sizeof ks, off, seed))) break;
                off += sizeof ks;
                pos = 0;
            }
            r = cnd_le32(ks + pos);
            pos += 4;
            if ((uint64_t)r < limit) break;
        }
        uint32_t j = (uint32_t)((uint64_t)r % bound), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    cnd_prg_destroy(&prg);
    if (rc) {
        free(perm);
        cnd_secagg_graph_destroy(&g);
        return rc;
    }
    uint32_t h = f.degree / 2;
    for (uint32_t i = 0; i < f.n; i++) {
        uint32_t u = perm[i], *row = g->nb + (size_t)u * g->k, c = 0;
        row[c++] = u;
        for (uint32_t j = 1; j <= h; j++) {
            row[c++] = perm[(i + j) % f.n];
            row[c++] = perm[(i + f.n - j) % f.n];
        }
        qsort(row, g->k, sizeof *row, s_cmp_u32);
    }
    free(perm);
    *out = g;
    return 0;
}

void cnd_secagg_graph_destroy(cnd_secagg_graph_t **g)
{
    if (!g || !*g) return;
    free((*g)->nb);
    free(*g);
    *g = NULL;
}

const uint32_t *cnd_secagg_graph_neighbours(const cnd_secagg_graph_t *g, uint32_t u, uint32_t *k)
{
    *k = g->k;
    return g->nb + (size_t)u * g->k;
}

int cnd_secagg_graph_pos(const cnd_secagg_graph_t *g, uint32_t u, uint32_t v)
{
    if (u >= g->n) return -1;
    const uint32_t *row = g->nb + (size_t)u * g->k;
    uint32_t lo = 0, hi = g->k;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (row[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < g->k && row[lo] == v ? (int)lo : -1;
}

/* --- threads ------------------------------------------------------------------------------ */

typedef struct {
    size_t n;
    cnd_sa_item_fn fn;
    void *ctx;
    atomic_size_t next;
    atomic_int rc;
} s_par_t;

typedef struct {
    s_par_t *p;
    unsigned worker;
} s_par_arg_t;

static void *s_par_worker(void *arg)
{
    s_par_arg_t *a = arg;
    s_par_t *p = a->p;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n || atomic_load(&p->rc) != 0) break;
        int rc = p->fn(p->ctx, i, a->worker);
        if (rc) {
            int zero = 0;
            atomic_compare_exchange_strong(&p->rc, &zero, rc);
        }
    }
    return NULL;
}

int cnd_sa_parallel(size_t n, unsigned threads, size_t min_per_worker, cnd_sa_item_fn fn, void *ctx)
{
    s_par_t p;
    p.n = n;
    p.fn = fn;
    p.ctx = ctx;
    atomic_init(&p.next, 0);
    atomic_init(&p.rc, 0);
    if (threads < 1) threads = 1;
    if (threads > CND_SA_MAX_THREADS) threads = CND_SA_MAX_THREADS;
    /* Starting a thread costs more than a few small items (and on a busy machine a new thread
     * may wait a long time for a core), so callers of cheap items ask for several per worker. */
    if (min_per_worker < 1) min_per_worker = 1;
    if (threads > n / min_per_worker)
        threads = n / min_per_worker ? (unsigned)(n / min_per_worker) : 1;
    pthread_t tid[CND_SA_MAX_THREADS];
    s_par_arg_t args[CND_SA_MAX_THREADS];
    unsigned started = 0;
    for (unsigned i = 1; i < threads; i++) {
        args[i] = (s_par_arg_t){&p, i};
        if (pthread_create(&tid[started], NULL, s_par_worker, &args[i]) != 0) break;
        started++;
    }
    args[0] = (s_par_arg_t){&p, 0};
    s_par_worker(&args[0]);
    for (unsigned i = 0; i < started; i++) pthread_join(tid[i], NULL);
    return atomic_load(&p.rc);
}

typedef struct {
    uint32_t *acc;
    size_t len, chunk;
    unsigned word_bits;
    const cnd_sa_job_t *jobs;
    size_t n_jobs;
    cnd_prg_t *prg[CND_SA_MAX_THREADS]; /* one generator per worker */
} s_mask_ctx_t;

static int s_mask_chunk(void *arg, size_t c, unsigned worker)
{
    s_mask_ctx_t *m = arg;
    size_t lo = c * m->chunk, hi = lo + m->chunk < m->len ? lo + m->chunk : m->len;
    for (size_t j = 0; j < m->n_jobs; j++) {
        int rc = cnd_prg_mask_add(m->prg[worker], m->acc, lo, hi, m->jobs[j].seed, m->word_bits,
                                  m->jobs[j].negate);
        if (rc) return rc;
    }
    return 0;
}

int cnd_sa_apply_masks(uint32_t *acc, size_t len, unsigned word_bits, const cnd_sa_job_t *jobs,
                       size_t n_jobs, unsigned threads)
{
    if (threads < 1) threads = 1;
    if (threads > CND_SA_MAX_THREADS) threads = CND_SA_MAX_THREADS;
    s_mask_ctx_t m;
    memset(&m, 0, sizeof m);
    m.acc = acc;
    m.len = len;
    m.word_bits = word_bits;
    m.jobs = jobs;
    m.n_jobs = n_jobs;
    /* Chunks of at most 32768 elements (128 KiB of accumulator, L2-resident), about four per
     * worker for balance, multiples of 32 (keystream alignment). */
    size_t chunk = (len + 4 * threads - 1) / (4 * threads);
    chunk = (chunk + 31) / 32 * 32;
    if (chunk > 32768) chunk = 32768;
    if (chunk < 1024) chunk = 1024;
    m.chunk = chunk;
    size_t n_chunks = (len + chunk - 1) / chunk;
    if (threads > n_chunks) threads = (unsigned)n_chunks;
    int rc = 0;
    for (unsigned t = 0; t < threads && !rc; t++)
        if (!(m.prg[t] = cnd_prg_new(CND_PRG_MASK))) rc = CND_ECRYPTO;
    if (!rc) rc = cnd_sa_parallel(n_chunks, threads, 1, s_mask_chunk, &m);
    for (unsigned t = 0; t < threads; t++) cnd_prg_destroy(&m.prg[t]);
    return rc;
}
