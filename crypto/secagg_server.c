/*
 * secagg_server.c: the coordinator's state machine of secagg.h.
 *
 * Phases: ADVERTS -end_adverts-> SHARES -end_shares-> MASKED -end_masked-> CONSIST
 * -end_consistency-> UNMASK -finish-> DONE. The sets U1 (advertised), U2 (shared), U3 (masked),
 * U4 (signed the survivor sets) are the status flags at the end of each phase. Every add_*
 * validates the whole message before touching state, so a refused message changes nothing and its
 * sender simply counts as dropped.
 *
 * Memory: per client its advert (213 bytes; every client receives all n of them, since the
 * neighbour graph is seeded by their hash), the k-1 share ciphertexts it sends (112 bytes
 * each) and the k shares that will be returned about it (32 bytes each), plus ONE accumulator of
 * `len` 32-bit words into which masked vectors are unpacked and added as they arrive. No
 * per-client vector is ever stored.
 *
 * Consistency rule that makes the masks cancel: a client in U2 must have sent a share to every
 * neighbour in U1 (otherwise its SHARES message is refused). Then two clients of U2 that are
 * neighbours both received each other's share, so both added the pair's mask, with opposite
 * signs; a survivor's mask with a client of U2 \ U3 is removed in finish from that client's
 * rebuilt key.
 */
#include "secagg_internal.h"
#include "clock.h"
#include "fixedpoint.h"
#include "shamir.h"
#include "sign.h"

#include <stdlib.h>
#include <string.h>

enum { PH_ADVERTS, PH_SHARES, PH_MASKED, PH_CONSIST, PH_UNMASK, PH_DONE, PH_FAILED };

struct cnd_secagg_server {
    cnd_secagg_params_t p; /* filled parameters */
    uint8_t D[32];         /* their digest */
    cnd_secagg_graph_t *g;
    uint32_t k;                  /* neighbourhood size */
    cnd_secagg_member_t *roster; /* n members, index order (copy) */
    unsigned threads;
    int phase;
    uint8_t *status;        /* n x CND_SECAGG_ST_* */
    uint8_t *adverts;       /* n x S_SA_ADVERT_BYTES */
    uint8_t *cts;           /* n x k x S_SA_CT_BYTES: from u to N(u)[j] */
    uint8_t *shares;        /* n x k x 32: owner u's share held by N(u)[j] */
    uint8_t *have;          /* n x k: share present */
    uint32_t *acc;          /* running sum of masked vectors */
    uint8_t *u2, *u3;       /* survivor bitmaps, fixed at end_masked */
    uint8_t sdigest[32];    /* their digest, which survivors sign */
    uint8_t *sigs;          /* n x 64: consistency signatures */
    double t_keys, t_masks; /* last finish: secrets+seeds, mask expansion (s) */
};

#define S_ADV(s, u)     ((s)->adverts + (size_t)(u)*S_SA_ADVERT_BYTES)
#define S_CT(s, u, j)   ((s)->cts + ((size_t)(u) * (s)->k + (j)) * S_SA_CT_BYTES)
#define S_SH(s, u, j)   ((s)->shares + ((size_t)(u) * (s)->k + (j)) * 32)
#define S_HAVE(s, u, j) ((s)->have[(size_t)(u) * (s)->k + (j)])

int cnd_secagg_server_new(cnd_secagg_server_t **out, const cnd_secagg_params_t *p,
                          const cnd_secagg_member_t *roster, unsigned threads)
{
    *out = NULL;
    int rc = cnd_crypto_init();
    if (rc) return rc;
    cnd_secagg_params_t f = *p;
    if ((rc = cnd_secagg_params_fill(&f))) return rc;
    if ((rc = cnd_sa_roster_check(roster, f.n))) return rc;
    cnd_secagg_server_t *s = calloc(1, sizeof *s);
    if (!s) return cnd_errf(CND_ENOMEM, "out of memory for a secagg server");
    s->p = f;
    s->k = f.degree + 1;
    s->threads = threads ? threads : 1;
    cnd_sa_params_digest(s->D, &f, roster);
    size_t nk = (size_t)f.n * s->k;
    s->roster = malloc((size_t)f.n * sizeof *s->roster);
    if (s->roster) memcpy(s->roster, roster, (size_t)f.n * sizeof *s->roster);
    s->status = calloc(f.n, 1);
    s->adverts = malloc((size_t)f.n * S_SA_ADVERT_BYTES);
    s->cts = malloc(nk * S_SA_CT_BYTES);
    s->shares = sodium_malloc(nk * 32);
    s->have = calloc(nk, 1);
    s->acc = calloc(f.len, sizeof *s->acc);
    s->u2 = calloc(cnd_sa_bitmap_bytes(f.n), 1);
    s->u3 = calloc(cnd_sa_bitmap_bytes(f.n), 1);
    s->sigs = malloc((size_t)f.n * 64);
    if (!s->roster || !s->status || !s->adverts || !s->cts || !s->shares || !s->have || !s->acc ||
        !s->u2 || !s->u3 || !s->sigs)
        rc = cnd_errf(CND_ENOMEM, "out of memory for a secagg server of %u clients", f.n);
    if (rc) {
        cnd_secagg_server_destroy(&s);
        return rc;
    }
    s->phase = PH_ADVERTS;
    *out = s;
    return 0;
}

void cnd_secagg_server_destroy(cnd_secagg_server_t **sp)
{
    if (!sp || !*sp) return;
    cnd_secagg_server_t *s = *sp;
    free(s->roster);
    free(s->status);
    free(s->adverts);
    free(s->cts);
    if (s->shares) sodium_free(s->shares);
    free(s->have);
    free(s->acc);
    free(s->u2);
    free(s->u3);
    free(s->sigs);
    cnd_secagg_graph_destroy(&s->g);
    free(s);
    *sp = NULL;
}

const uint8_t *cnd_secagg_server_status(const cnd_secagg_server_t *s)
{
    return s->status;
}

void cnd_secagg_server_finish_times(const cnd_secagg_server_t *s, double *keys_s, double *masks_s)
{
    if (keys_s) *keys_s = s->t_keys;
    if (masks_s) *masks_s = s->t_masks;
}

static const char *s_phase_name(int ph)
{
    static const char *n[] = {"advertise", "share keys", "masked input", "consistency",
                              "unmask",    "done",       "failed"};
    return n[ph];
}

static int s_phase(const cnd_secagg_server_t *s, int want, const char *what)
{
    if (s->phase == want) return 0;
    return cnd_errf(CND_ESTATE, "secagg round %llu: %s during the %s phase",
                    (unsigned long long)s->p.round_id, what, s_phase_name(s->phase));
}

/* Common checks of a client message: phase, sender known and in the previous set, not a
 * duplicate, header consistent with the transport's sender. */
static int s_begin(cnd_secagg_server_t *s, cnd_rd_t *r, int phase, uint8_t type, uint32_t from,
                   uint8_t need, uint8_t done_flag, const uint8_t *msg, size_t len,
                   const char *what)
{
    int rc = s_phase(s, phase, what);
    if (rc) return rc;
    if (from >= s->p.n)
        return cnd_errf(CND_EPROTO, "secagg: %s from unknown client %u", what, from);
    if ((s->status[from] & need) != need)
        return cnd_errf(CND_EPROTO, "secagg: %s from client %u, which dropped out earlier", what,
                        from);
    if (s->status[from] & done_flag)
        return cnd_errf(CND_EPROTO, "secagg: duplicate %s from client %u", what, from);
    char who[48];
    snprintf(who, sizeof who, "secagg server, client %u", from);
    cnd_secagg_hdr_t h;
    cnd_rd_init(r, msg, len);
    if ((rc = cnd_sa_hdr_expect(r, &h, type, s->p.round_id, CND_SECAGG_SERVER, who))) return rc;
    if (h.from != from)
        return cnd_errf(CND_EPROTO, "secagg: %s header names client %u but came from client %u",
                        what, h.from, from);
    return 0;
}

int cnd_secagg_server_add_advert(cnd_secagg_server_t *s, uint32_t from, const uint8_t *msg,
                                 size_t len)
{
    cnd_rd_t r;
    int rc = s_begin(s, &r, PH_ADVERTS, CND_SECAGG_ADVERT, from, 0, CND_SECAGG_ST_ADVERTISED, msg,
                     len, "ADVERT");
    if (rc) return rc;
    cnd_sa_advert_t a;
    if ((rc = cnd_sa_advert_parse(&a, msg, len, s->p.round_id, "secagg server"))) return rc;
    if ((rc = cnd_sa_advert_verify(&a, s->D, s->roster, s->p.n))) return rc;
    memcpy(S_ADV(s, from), msg, S_SA_ADVERT_BYTES);
    s->status[from] |= CND_SECAGG_ST_ADVERTISED;
    return 0;
}

static int s_end(cnd_secagg_server_t *s, int phase, uint8_t flag, const char *what)
{
    int rc = s_phase(s, phase, "closing the phase");
    if (rc) return rc;
    uint32_t count = 0;
    for (uint32_t u = 0; u < s->p.n; u++) count += (s->status[u] & flag) != 0;
    if (count < s->p.min_survivors) {
        s->phase = PH_FAILED;
        return cnd_errf(CND_ESTATE,
                        "secagg round %llu failed: only %u clients %s; the round needs at least "
                        "%u",
                        (unsigned long long)s->p.round_id, count, what, s->p.min_survivors);
    }
    s->phase = phase + 1;
    return 0;
}

int cnd_secagg_server_end_adverts(cnd_secagg_server_t *s)
{
    int rc = s_phase(s, PH_ADVERTS, "closing the phase");
    if (rc) return rc;
    /* The graph seed hashes every participant's advert: one missing and no graph exists. */
    for (uint32_t u = 0; u < s->p.n; u++)
        if (!(s->status[u] & CND_SECAGG_ST_ADVERTISED)) {
            s->phase = PH_FAILED;
            return cnd_errf(CND_ESTATE,
                            "secagg round %llu failed: client %u did not advertise keys; the "
                            "neighbour graph is drawn from every participant's keys",
                            (unsigned long long)s->p.round_id, u);
        }
    uint8_t gseed[32];
    cnd_sa_graph_seed(gseed, s->D, s->adverts, s->p.n);
    if ((rc = cnd_secagg_graph_new(&s->g, &s->p, gseed))) {
        s->phase = PH_FAILED;
        return rc;
    }
    s->phase = PH_SHARES;
    return 0;
}

static int s_msg_for(const cnd_secagg_server_t *s, uint32_t v, int phase, uint8_t need,
                     const char *what)
{
    int rc = s_phase(s, phase, what);
    if (rc) return rc;
    if (v >= s->p.n || (s->status[v] & need) != need)
        return cnd_errf(CND_ESTATE, "secagg: no %s for client %u, which dropped out", what, v);
    return 0;
}

int cnd_secagg_server_keys_msg(cnd_secagg_server_t *s, cnd_buf_t *out, uint32_t v)
{
    int rc = s_msg_for(s, v, PH_SHARES, CND_SECAGG_ST_ADVERTISED, "KEYS message");
    if (rc) return rc;
    cnd_sa_hdr_put(out, CND_SECAGG_KEYS, s->p.round_id, CND_SECAGG_SERVER, v);
    cnd_buf_u32(out, s->p.n);
    cnd_buf_put(out, s->adverts, (size_t)s->p.n * S_SA_ADVERT_BYTES);
    return out->err ? cnd_errf(CND_ENOMEM, "out of memory") : 0;
}

int cnd_secagg_server_add_shares(cnd_secagg_server_t *s, uint32_t from, const uint8_t *msg,
                                 size_t len)
{
    cnd_rd_t r;
    int rc = s_begin(s, &r, PH_SHARES, CND_SECAGG_SHARES, from, CND_SECAGG_ST_ADVERTISED,
                     CND_SECAGG_ST_SHARED, msg, len, "SHARES");
    if (rc) return rc;
    uint32_t k;
    const uint32_t *nb = cnd_secagg_graph_neighbours(s->g, from, &k);
    uint32_t want = 0;
    for (uint32_t j = 0; j < k; j++)
        want += nb[j] != from && (s->status[nb[j]] & CND_SECAGG_ST_ADVERTISED);
    uint32_t count = cnd_rd_u32(&r);
    if (r.err || count != want || cnd_rd_left(&r) != (size_t)count * (4 + S_SA_CT_BYTES))
        return cnd_errf(CND_EPROTO,
                        "secagg: SHARES from client %u must carry one share for each of its %u "
                        "advertised neighbours",
                        from, want);
    /* Validate all recipients first (ascending, each an advertised neighbour). */
    size_t body = r.off;
    uint32_t prev = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t to = cnd_rd_u32(&r);
        cnd_rd_take(&r, S_SA_CT_BYTES);
        int j = cnd_secagg_graph_pos(s->g, from, to);
        if ((i && to <= prev) || j < 0 || to == from || !(s->status[to] & CND_SECAGG_ST_ADVERTISED))
            return cnd_errf(CND_EPROTO,
                            "secagg: SHARES from client %u address client %u out of order or "
                            "outside its advertised neighbours",
                            from, to);
        prev = to;
    }
    r.off = body;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t to = cnd_rd_u32(&r);
        memcpy(S_CT(s, from, cnd_secagg_graph_pos(s->g, from, to)), cnd_rd_take(&r, S_SA_CT_BYTES),
               S_SA_CT_BYTES);
    }
    s->status[from] |= CND_SECAGG_ST_SHARED;
    return 0;
}

int cnd_secagg_server_end_shares(cnd_secagg_server_t *s)
{
    return s_end(s, PH_SHARES, CND_SECAGG_ST_SHARED, "shared their keys");
}

int cnd_secagg_server_shares_msg(cnd_secagg_server_t *s, cnd_buf_t *out, uint32_t v)
{
    int rc = s_msg_for(s, v, PH_MASKED, CND_SECAGG_ST_SHARED, "SHARES_FOR message");
    if (rc) return rc;
    uint32_t k;
    const uint32_t *nb = cnd_secagg_graph_neighbours(s->g, v, &k);
    uint32_t count = 0;
    for (uint32_t j = 0; j < k; j++)
        count += nb[j] != v && (s->status[nb[j]] & CND_SECAGG_ST_SHARED);
    cnd_sa_hdr_put(out, CND_SECAGG_SHARES_FOR, s->p.round_id, CND_SECAGG_SERVER, v);
    cnd_buf_u32(out, count);
    for (uint32_t j = 0; j < k; j++) {
        uint32_t u = nb[j];
        if (u == v || !(s->status[u] & CND_SECAGG_ST_SHARED)) continue;
        cnd_buf_u32(out, u);
        cnd_buf_put(out, S_CT(s, u, cnd_secagg_graph_pos(s->g, u, v)), S_SA_CT_BYTES);
    }
    return out->err ? cnd_errf(CND_ENOMEM, "out of memory") : 0;
}

int cnd_secagg_server_add_masked(cnd_secagg_server_t *s, uint32_t from, const uint8_t *msg,
                                 size_t len)
{
    cnd_rd_t r;
    int rc = s_begin(s, &r, PH_MASKED, CND_SECAGG_MASKED, from, CND_SECAGG_ST_SHARED,
                     CND_SECAGG_ST_MASKED, msg, len, "MASKED");
    if (rc) return rc;
    uint32_t n = cnd_rd_u32(&r);
    uint8_t bits = cnd_rd_u8(&r);
    size_t nb = cnd_ring_packed_bytes(s->p.len, s->p.bits);
    if (r.err || n != s->p.len || bits != s->p.bits || cnd_rd_left(&r) != nb)
        return cnd_errf(CND_EPROTO,
                        "secagg: masked vector from client %u has %u elements of %u bits in %zu "
                        "bytes; the round uses %u of %u bits (%zu bytes)",
                        from, n, bits, cnd_rd_left(&r), s->p.len, s->p.bits, nb);
    if ((rc = cnd_ring_unpack_add(s->acc, cnd_rd_take(&r, nb), s->p.len, s->p.bits)))
        return cnd_err_wrap(rc, "secagg: masked vector from client %u", from);
    s->status[from] |= CND_SECAGG_ST_MASKED;
    return 0;
}

int cnd_secagg_server_end_masked(cnd_secagg_server_t *s)
{
    int rc = s_end(s, PH_MASKED, CND_SECAGG_ST_MASKED, "sent masked input");
    if (rc) return rc;
    for (uint32_t u = 0; u < s->p.n; u++) {
        if (s->status[u] & CND_SECAGG_ST_SHARED) s->u2[u / 8] |= (uint8_t)(1u << (u % 8));
        if (s->status[u] & CND_SECAGG_ST_MASKED) s->u3[u / 8] |= (uint8_t)(1u << (u % 8));
    }
    cnd_sa_survivors_digest(s->sdigest, s->D, s->p.n, s->u2, s->u3);
    return 0;
}

int cnd_secagg_server_consistency_msg(cnd_secagg_server_t *s, cnd_buf_t *out, uint32_t v)
{
    int rc = s_msg_for(s, v, PH_CONSIST, CND_SECAGG_ST_MASKED, "CONSIST_REQ message");
    if (rc) return rc;
    cnd_sa_hdr_put(out, CND_SECAGG_CONSIST_REQ, s->p.round_id, CND_SECAGG_SERVER, v);
    cnd_buf_u32(out, s->p.n);
    cnd_buf_put(out, s->u2, cnd_sa_bitmap_bytes(s->p.n));
    cnd_buf_put(out, s->u3, cnd_sa_bitmap_bytes(s->p.n));
    return out->err ? cnd_errf(CND_ENOMEM, "out of memory") : 0;
}

int cnd_secagg_server_add_consistency(cnd_secagg_server_t *s, uint32_t from, const uint8_t *msg,
                                      size_t len)
{
    cnd_rd_t r;
    int rc = s_begin(s, &r, PH_CONSIST, CND_SECAGG_CONSIST, from, CND_SECAGG_ST_MASKED,
                     CND_SECAGG_ST_SIGNED, msg, len, "CONSISTENCY");
    if (rc) return rc;
    const uint8_t *sig = cnd_rd_take(&r, 64);
    if (!sig || cnd_rd_left(&r) != 0)
        return cnd_errf(CND_EPROTO, "secagg: malformed CONSISTENCY from client %u", from);
    uint8_t m[S_SA_CONSIST_SIGNED];
    cnd_sa_consist_signed(m, s->D, from, s->sdigest);
    if (cnd_verify(sig, S_ADV(s, from) + CND_SECAGG_HDR_BYTES, "secagg-consistency", m, sizeof m) !=
        0)
        return cnd_errf(CND_ECRYPTO,
                        "secagg: client %u's signature does not cover this round's survivor sets",
                        from);
    memcpy(s->sigs + (size_t)from * 64, sig, 64);
    s->status[from] |= CND_SECAGG_ST_SIGNED;
    return 0;
}

int cnd_secagg_server_end_consistency(cnd_secagg_server_t *s)
{
    return s_end(s, PH_CONSIST, CND_SECAGG_ST_SIGNED, "signed the survivor sets");
}

/* Who v is asked about: alive = N(v) & U3, dropped = N(v) & (U2 \ U3). */
static uint8_t s_kind(const cnd_secagg_server_t *s, uint32_t u)
{
    if (s->status[u] & CND_SECAGG_ST_MASKED) return S_SA_SHARE_SEED;
    if (s->status[u] & CND_SECAGG_ST_SHARED) return S_SA_SHARE_MASKKEY;
    return 0;
}

int cnd_secagg_server_unmask_msg(cnd_secagg_server_t *s, cnd_buf_t *out, uint32_t v)
{
    int rc = s_msg_for(s, v, PH_UNMASK, CND_SECAGG_ST_SIGNED, "UNMASK_REQ message");
    if (rc) return rc;
    uint32_t k, na = 0, nd = 0;
    const uint32_t *nb = cnd_secagg_graph_neighbours(s->g, v, &k);
    for (uint32_t j = 0; j < k; j++) {
        na += s_kind(s, nb[j]) == S_SA_SHARE_SEED;
        nd += s_kind(s, nb[j]) == S_SA_SHARE_MASKKEY;
    }
    cnd_sa_hdr_put(out, CND_SECAGG_UNMASK_REQ, s->p.round_id, CND_SECAGG_SERVER, v);
    cnd_buf_u32(out, na);
    for (uint32_t j = 0; j < k; j++)
        if (s_kind(s, nb[j]) == S_SA_SHARE_SEED) cnd_buf_u32(out, nb[j]);
    cnd_buf_u32(out, nd);
    for (uint32_t j = 0; j < k; j++)
        if (s_kind(s, nb[j]) == S_SA_SHARE_MASKKEY) cnd_buf_u32(out, nb[j]);
    /* Evidence that the survivor sets are the ones a majority signed: the first min_survivors
     * signatures by index. */
    cnd_buf_u32(out, s->p.min_survivors);
    for (uint32_t u = 0, c = 0; u < s->p.n && c < s->p.min_survivors; u++) {
        if (!(s->status[u] & CND_SECAGG_ST_SIGNED)) continue;
        cnd_buf_u32(out, u);
        cnd_buf_put(out, S_ADV(s, u) + CND_SECAGG_HDR_BYTES, 32);
        cnd_buf_put(out, s->sigs + (size_t)u * 64, 64);
        c++;
    }
    return out->err ? cnd_errf(CND_ENOMEM, "out of memory") : 0;
}

int cnd_secagg_server_add_unmask(cnd_secagg_server_t *s, uint32_t from, const uint8_t *msg,
                                 size_t len)
{
    cnd_rd_t r;
    int rc = s_begin(s, &r, PH_UNMASK, CND_SECAGG_UNMASK, from, CND_SECAGG_ST_SIGNED,
                     CND_SECAGG_ST_UNMASKED, msg, len, "UNMASK");
    if (rc) return rc;
    uint32_t k, want = 0;
    const uint32_t *nb = cnd_secagg_graph_neighbours(s->g, from, &k);
    for (uint32_t j = 0; j < k; j++) want += s_kind(s, nb[j]) != 0;
    uint32_t count = cnd_rd_u32(&r);
    if (r.err || count != want || cnd_rd_left(&r) != (size_t)count * (4 + 1 + 32))
        return cnd_errf(CND_EPROTO, "secagg: UNMASK from client %u must carry %u shares", from,
                        want);
    /* The entries must be exactly what was asked, in ascending order of owner. */
    size_t body = r.off;
    uint32_t j = 0;
    for (uint32_t i = 0; i < count; i++, j++) {
        uint32_t owner = cnd_rd_u32(&r);
        uint8_t kind = cnd_rd_u8(&r);
        cnd_rd_take(&r, 32);
        while (j < k && s_kind(s, nb[j]) == 0) j++;
        if (j == k || owner != nb[j] || kind != s_kind(s, owner))
            return cnd_errf(CND_EPROTO,
                            "secagg: UNMASK from client %u holds a share of client %u that was "
                            "not asked for",
                            from, owner);
    }
    r.off = body;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t owner = cnd_rd_u32(&r);
        cnd_rd_u8(&r);
        int pos = cnd_secagg_graph_pos(s->g, owner, from);
        memcpy(S_SH(s, owner, pos), cnd_rd_take(&r, 32), 32);
        S_HAVE(s, owner, pos) = 1;
    }
    s->status[from] |= CND_SECAGG_ST_UNMASKED;
    return 0;
}

/* --- finish ------------------------------------------------------------------------------- */

typedef struct {
    cnd_secagg_server_t *s;
    const uint32_t *owners;     /* clients whose secret is rebuilt */
    uint8_t (*secret)[32];      /* rebuilt secrets, same order (secure memory) */
    const uint32_t *pair_u;     /* dropped client of each pair */
    const uint32_t *pair_v;     /* surviving neighbour of each pair */
    const uint32_t *pair_owner; /* index into owners/secret of pair_u */
    cnd_sa_job_t *jobs;         /* one per survivor, then one per pair */
    size_t n_alive;             /* survivors: the first n_alive owners */
} s_finish_t;

static int s_rebuild(void *arg, size_t i, unsigned worker)
{
    (void)worker;
    s_finish_t *f = arg;
    cnd_secagg_server_t *s = f->s;
    uint32_t u = f->owners[i];
    uint8_t xs[CND_SECAGG_MAX_K], sh[CND_SECAGG_MAX_K * 32];
    uint32_t m = 0;
    for (uint32_t j = 0; j < s->k && m < s->p.threshold; j++) {
        if (!S_HAVE(s, u, j)) continue;
        xs[m] = (uint8_t)(j + 1);
        memcpy(sh + (size_t)m * 32, S_SH(s, u, j), 32);
        m++;
    }
    int rc = cnd_shamir_combine(f->secret[i], 32, sh, xs, m);
    sodium_memzero(sh, sizeof sh);
    if (rc) return rc;
    const uint8_t *adv = S_ADV(s, u) + CND_SECAGG_HDR_BYTES;
    uint8_t check[32];
    if (i < f->n_alive) {
        cnd_sa_commit(check, s->D, u, f->secret[i]);
        if (sodium_memcmp(check, adv + 96, 32) != 0)
            return cnd_errf(CND_ECRYPTO,
                            "secagg: the self-mask seed rebuilt for client %u does not match its "
                            "commitment (a neighbour returned a bad share)",
                            u);
        memcpy(f->jobs[i].seed, f->secret[i], 32);
        f->jobs[i].negate = 1;
    } else if (crypto_scalarmult_base(check, f->secret[i]) != 0 ||
               sodium_memcmp(check, adv + 64, 32) != 0) {
        return cnd_errf(CND_ECRYPTO,
                        "secagg: the mask key rebuilt for dropped client %u does not match its "
                        "public key (a neighbour returned a bad share)",
                        u);
    }
    return 0;
}

static int s_pair_seed(void *arg, size_t i, unsigned worker)
{
    (void)worker;
    s_finish_t *f = arg;
    cnd_secagg_server_t *s = f->s;
    uint32_t u = f->pair_u[i], v = f->pair_v[i];
    cnd_sa_job_t *job = &f->jobs[f->n_alive + i];
    if (cnd_sa_pair_key(job->seed, "mask", s->D, u, v, f->secret[f->pair_owner[i]],
                        S_ADV(s, v) + CND_SECAGG_HDR_BYTES + 64) != 0)
        return cnd_errf(CND_ECRYPTO, "secagg: mask key of client %u is invalid", v);
    job->negate = v < u; /* v added +PRG when v < u: take it away */
    return 0;
}

int cnd_secagg_server_finish(cnd_secagg_server_t *s, uint32_t *sum)
{
    int rc = s_phase(s, PH_UNMASK, "finish");
    if (rc) return rc;
    double t0 = cnd_now();
    const uint32_t n = s->p.n, t = s->p.threshold;
    /* Owners: survivors first, then clients that dropped after sharing. Check share counts. */
    uint32_t *owners = malloc((size_t)n * sizeof *owners);
    if (!owners) return cnd_errf(CND_ENOMEM, "out of memory");
    size_t n_alive = 0, n_own = 0, n_pairs = 0;
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t u = 0; u < n; u++) {
            uint8_t kind = s_kind(s, u);
            if (kind != (pass == 0 ? S_SA_SHARE_SEED : S_SA_SHARE_MASKKEY)) continue;
            uint32_t got = 0;
            for (uint32_t j = 0; j < s->k; j++) got += S_HAVE(s, u, j);
            if (got < t) {
                free(owners);
                return cnd_errf(CND_ESTATE,
                                "secagg round %llu cannot finish: %s client %u has %u of the %u "
                                "shares needed to remove its %s (more unmask answers may "
                                "still arrive)",
                                (unsigned long long)s->p.round_id,
                                pass == 0 ? "surviving" : "dropped", u, got, t,
                                pass == 0 ? "self-mask" : "pairwise masks");
            }
            owners[n_own++] = u;
            if (pass == 0) n_alive++;
            if (pass == 1) {
                uint32_t k;
                const uint32_t *nb = cnd_secagg_graph_neighbours(s->g, u, &k);
                for (uint32_t j = 0; j < k; j++)
                    n_pairs += nb[j] != u && s_kind(s, nb[j]) == S_SA_SHARE_SEED;
            }
        }
    s_finish_t f = {s, owners, NULL, NULL, NULL, NULL, NULL, n_alive};
    uint32_t *pairs = malloc((3 * n_pairs + 1) * sizeof *pairs);
    f.secret = sodium_malloc((n_own ? n_own : 1) * 32);
    f.jobs = sodium_malloc((n_alive + n_pairs + 1) * sizeof *f.jobs);
    if (!pairs || !f.secret || !f.jobs) {
        rc = cnd_errf(CND_ENOMEM, "out of memory");
        goto done;
    }
    size_t q = 0;
    for (size_t i = n_alive; i < n_own; i++) {
        uint32_t u = owners[i], k;
        const uint32_t *nb = cnd_secagg_graph_neighbours(s->g, u, &k);
        for (uint32_t j = 0; j < k; j++) {
            if (nb[j] == u || s_kind(s, nb[j]) != S_SA_SHARE_SEED) continue;
            pairs[q] = u;
            pairs[n_pairs + q] = nb[j];
            pairs[2 * n_pairs + q] = (uint32_t)i;
            q++;
        }
    }
    f.pair_u = pairs;
    f.pair_v = pairs + n_pairs;
    f.pair_owner = pairs + 2 * n_pairs;
    if ((rc = cnd_sa_parallel(n_own, s->threads, 8, s_rebuild, &f))) goto fail;
    if ((rc = cnd_sa_parallel(n_pairs, s->threads, 8, s_pair_seed, &f))) goto fail;
    double t1 = cnd_now();
    rc = cnd_sa_apply_masks(s->acc, s->p.len, cnd_sa_word_bits(s->p.bits), f.jobs,
                            n_alive + n_pairs, s->threads);
    if (rc) goto fail;
    uint32_t mask = s->p.bits == 32 ? 0xffffffffu : (((uint32_t)1 << s->p.bits) - 1);
    for (uint32_t i = 0; i < s->p.len; i++) sum[i] = s->acc[i] & mask;
    s->t_keys = t1 - t0;
    s->t_masks = cnd_now() - t1;
    s->phase = PH_DONE;
    goto done;
fail:
    s->phase = PH_FAILED;
done:
    if (f.secret) sodium_free(f.secret);
    if (f.jobs) sodium_free(f.jobs);
    free(pairs);
    free(owners);
    sodium_memzero(s->shares, (size_t)s->p.n * s->k * 32);
    return rc;
}
