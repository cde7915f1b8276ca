/*
 * secagg_client.c: the client state machine of secagg.h.
 *
 * States: NEW -advertise-> ADVERTISED -share_keys-> SHARED -mask-> MASKED -consistency->
 * SIGNED -unmask-> DONE, and FAILED from anywhere on evidence of misbehaviour. Secrets (the two
 * X25519 secret keys, the self-mask seed, per-neighbour share keys and the shares held for
 * neighbours) live in one sodium_malloc'd block; each is wiped as soon as the protocol no longer
 * needs it, and the whole block on failure and on destroy. Per-neighbour state is indexed by the
 * neighbour's position in the sorted neighbourhood N(me), which is also its Shamir evaluation point
 * minus one.
 */
#include "secagg_internal.h"
#include "fixedpoint.h"
#include "shamir.h"
#include "sign.h"

#include <stdlib.h>
#include <string.h>

enum { ST_NEW, ST_ADVERTISED, ST_SHARED, ST_MASKED, ST_SIGNED, ST_DONE, ST_FAILED };

typedef struct {
    uint8_t enc_sk[32];                      /* c_u secret */
    uint8_t mask_sk[32];                     /* s_u secret */
    uint8_t seed[32];                        /* b_u */
    uint8_t share_key[CND_SECAGG_MAX_K][32]; /* AEAD key with each neighbour */
    uint8_t held_seed[CND_SECAGG_MAX_K][32]; /* neighbour j's b share held here */
    uint8_t held_sk[CND_SECAGG_MAX_K][32];   /* neighbour j's s secret share held here */
} s_secrets_t;

struct cnd_secagg_client {
    cnd_secagg_params_t p;       /* filled round parameters */
    uint8_t D[32];               /* their digest */
    uint32_t me, k, my_pos;      /* index, |N(me)|, position of me in N(me) */
    cnd_secagg_graph_t *g;       /* the round's graph */
    const uint32_t *nb;          /* N(me), ascending */
    const cnd_identity_t *id;    /* borrowed */
    cnd_secagg_member_t *roster; /* n members, index order (copy) */
    int state;
    s_secrets_t *sec;
    uint8_t enc_pk[32], mask_pk[32], commit[32];
    uint8_t my_advert[S_SA_ADVERT_BYTES]; /* as sent: KEYS must carry it unchanged */
    uint8_t peer_mask_pk[CND_SECAGG_MAX_K][32];
    uint8_t peer_id[CND_SECAGG_MAX_K][32];
    uint8_t advertised[CND_SECAGG_MAX_K]; /* 1: advert of N(me)[j] accepted (self: 1) */
    uint8_t received[CND_SECAGG_MAX_K];   /* 1: share from N(me)[j] received (self: 1) */
    uint8_t status[CND_SECAGG_MAX_K];     /* signed survivor set: 1 alive, 2 dropped */
    uint8_t sdigest[32];                  /* digest of the survivor sets signed */
    uint8_t *u3;                          /* the signed U3 bitmap */
    uint32_t floor;                       /* the caller's survivor minimum (0: none) */
};

int cnd_secagg_client_new(cnd_secagg_client_t **out, const cnd_secagg_params_t *p, uint32_t index,
                          const cnd_identity_t *id, const cnd_secagg_member_t *roster)
{
    *out = NULL;
    int rc = cnd_crypto_init();
    if (rc) return rc;
    cnd_secagg_params_t f = *p;
    if ((rc = cnd_secagg_params_fill(&f))) return rc;
    if (index >= f.n) return cnd_errf(CND_EINVAL, "secagg client index %u >= n = %u", index, f.n);
    if ((rc = cnd_sa_roster_check(roster, f.n))) return rc;
    if (sodium_memcmp(roster[index].id_pk, cnd_identity_pk(id), 32) != 0)
        return cnd_errf(CND_EINVAL,
                        "secagg client %u: the roster names another identity at this client's "
                        "index",
                        index);
    cnd_secagg_client_t *c = calloc(1, sizeof *c);
    if (!c) return cnd_errf(CND_ENOMEM, "out of memory for a secagg client");
    c->p = f;
    c->me = index;
    c->id = id;
    cnd_sa_params_digest(c->D, &f, roster);
    c->sec = sodium_malloc(sizeof *c->sec);
    c->roster = malloc((size_t)f.n * sizeof *c->roster);
    if (!c->sec || !c->roster) {
        cnd_secagg_client_destroy(&c);
        return cnd_errf(CND_ENOMEM, "out of memory for a secagg client");
    }
    memcpy(c->roster, roster, (size_t)f.n * sizeof *c->roster);
    sodium_memzero(c->sec, sizeof *c->sec);
    c->state = ST_NEW; /* the graph (and so N(me)) is fixed when all adverts are in */
    *out = c;
    return 0;
}

void cnd_secagg_client_destroy(cnd_secagg_client_t **c)
{
    if (!c || !*c) return;
    if ((*c)->sec) sodium_free((*c)->sec);
    free((*c)->roster);
    free((*c)->u3);
    cnd_secagg_graph_destroy(&(*c)->g);
    free(*c);
    *c = NULL;
}

const uint8_t *cnd_secagg_client_digest(const cnd_secagg_client_t *c)
{
    return c->D;
}

/* Aborts the round: wipes every secret, refuses every later call, passes rc through. */
static int s_abort(cnd_secagg_client_t *c, int rc)
{
    sodium_memzero(c->sec, sizeof *c->sec);
    c->state = ST_FAILED;
    return rc;
}

static int s_state(const cnd_secagg_client_t *c, int want, const char *what)
{
    if (c->state == want) return 0;
    if (c->state == ST_FAILED)
        return cnd_errf(CND_ESTATE, "secagg client %u: the round was aborted earlier", c->me);
    return cnd_errf(CND_ESTATE, "secagg client %u: %s is not the next step of the round", c->me,
                    what);
}

static int s_advertise(cnd_secagg_client_t *c, cnd_buf_t *out)
{
    int rc = s_state(c, ST_NEW, "advertise");
    if (rc) return rc;
    s_secrets_t *s = c->sec;
    randombytes_buf(s->enc_sk, 32);
    randombytes_buf(s->mask_sk, 32);
    randombytes_buf(s->seed, 32);
    if (crypto_scalarmult_base(c->enc_pk, s->enc_sk) != 0 ||
        crypto_scalarmult_base(c->mask_pk, s->mask_sk) != 0)
        return s_abort(c, cnd_errf(CND_ECRYPTO, "X25519 key generation failed"));
    cnd_sa_commit(c->commit, c->D, c->me, s->seed);
    uint8_t m[32 + 4 + 4 * 32], sig[CND_SIG_BYTES];
    const uint8_t *idpk = cnd_identity_pk(c->id);
    cnd_sa_advert_signed(m, c->D, c->me, idpk, c->enc_pk, c->mask_pk, c->commit);
    if ((rc = cnd_sign(sig, c->id, "secagg-advert", m, sizeof m))) return s_abort(c, rc);
    size_t mark = out->len;
    cnd_sa_hdr_put(out, CND_SECAGG_ADVERT, c->p.round_id, c->me, CND_SECAGG_SERVER);
    cnd_buf_put(out, idpk, 32);
    cnd_buf_put(out, c->enc_pk, 32);
    cnd_buf_put(out, c->mask_pk, 32);
    cnd_buf_put(out, c->commit, 32);
    cnd_buf_put(out, sig, sizeof sig);
    if (out->err) return s_abort(c, cnd_errf(CND_ENOMEM, "out of memory"));
    memcpy(c->my_advert, out->data + mark, S_SA_ADVERT_BYTES);
    c->state = ST_ADVERTISED;
    return 0;
}

/* Reads the KEYS message body: all n adverts in index order, each signed by the roster's identity
 * at its index over D, this client's own unchanged. Then fixes the graph (seeded by all of them)
 * and keeps what the client needs of its neighbours. *count receives the neighbours (k - 1). */
static int s_read_adverts(cnd_secagg_client_t *c, cnd_rd_t *r, uint8_t (*enc_pk)[32],
                          uint32_t *count, const char *who)
{
    uint32_t n = cnd_rd_u32(r);
    if (r->err || n != c->p.n || cnd_rd_left(r) != (size_t)n * S_SA_ADVERT_BYTES)
        return cnd_errf(CND_EPROTO,
                        "%s: KEYS message must carry the adverts of all %u participants (it has "
                        "%u)",
                        who, c->p.n, r->err ? 0 : n);
    const uint8_t *all = cnd_rd_take(r, (size_t)n * S_SA_ADVERT_BYTES);
    for (uint32_t u = 0; u < n; u++) {
        const uint8_t *m = all + (size_t)u * S_SA_ADVERT_BYTES;
        cnd_sa_advert_t a;
        int rc = cnd_sa_advert_parse(&a, m, S_SA_ADVERT_BYTES, c->p.round_id, who);
        if (rc) return rc;
        if (a.from != u)
            return cnd_errf(CND_EPROTO, "%s: advert %u of the KEYS message is client %u's", who, u,
                            a.from);
        if (u == c->me) {
            if (sodium_memcmp(m, c->my_advert, S_SA_ADVERT_BYTES) != 0)
                return cnd_errf(CND_ECRYPTO, "%s: the KEYS message alters this client's own keys",
                                who);
            continue;
        }
        if ((rc = cnd_sa_advert_verify(&a, c->D, c->roster, c->p.n)))
            return cnd_err_wrap(rc, "%s", who);
    }
    uint8_t gseed[32];
    cnd_sa_graph_seed(gseed, c->D, all, n);
    int rc = cnd_secagg_graph_new(&c->g, &c->p, gseed);
    if (rc) return rc;
    c->nb = cnd_secagg_graph_neighbours(c->g, c->me, &c->k);
    c->my_pos = (uint32_t)cnd_secagg_graph_pos(c->g, c->me, c->me);
    for (uint32_t j = 0; j < c->k; j++) {
        const uint8_t *m = all + (size_t)c->nb[j] * S_SA_ADVERT_BYTES + CND_SECAGG_HDR_BYTES;
        c->advertised[j] = 1;
        memcpy(c->peer_id[j], m, 32);
        memcpy(enc_pk[j], m + 32, 32);
        memcpy(c->peer_mask_pk[j], m + 64, 32);
    }
    c->received[c->my_pos] = 1;
    *count = c->k - 1;
    return 0;
}

static int s_share_keys(cnd_secagg_client_t *c, cnd_buf_t *out, const uint8_t *keys_msg, size_t len)
{
    int rc = s_state(c, ST_ADVERTISED, "share_keys");
    if (rc) return rc;
    char who[48];
    snprintf(who, sizeof who, "secagg client %u", c->me);
    cnd_rd_t r;
    cnd_secagg_hdr_t h;
    cnd_rd_init(&r, keys_msg, len);
    if ((rc = cnd_sa_hdr_expect(&r, &h, CND_SECAGG_KEYS, c->p.round_id, c->me, who)))
        return s_abort(c, rc);
    uint8_t enc_pk[CND_SECAGG_MAX_K][32];
    uint32_t count = 0;
    if ((rc = s_read_adverts(c, &r, enc_pk, &count, who))) return s_abort(c, rc);
    s_secrets_t *s = c->sec;
    for (uint32_t j = 0; j < c->k; j++) {
        if (j == c->my_pos || !c->advertised[j]) continue;
        if (cnd_sa_pair_key(s->share_key[j], "share", c->D, c->me, c->nb[j], s->enc_sk,
                            enc_pk[j]) != 0)
            return s_abort(c, cnd_errf(CND_ECRYPTO, "%s: client %u's encryption key is invalid",
                                       who, c->nb[j]));
    }
    /* Shares for every position of N(me); those of absent members are never sent. */
    uint8_t xs[CND_SECAGG_MAX_K];
    for (uint32_t j = 0; j < c->k; j++) xs[j] = (uint8_t)(j + 1);
    /* On the stack (16 KiB) rather than sodium_malloc: no page-table churn per client; wiped
     * below on every path. */
    uint8_t sh[2 * CND_SECAGG_MAX_K * 32];
    uint8_t *sh_seed = sh, *sh_sk = sh + (size_t)CND_SECAGG_MAX_K * 32;
    rc = cnd_shamir_split(sh_seed, s->seed, 32, c->p.threshold, xs, c->k);
    if (!rc) rc = cnd_shamir_split(sh_sk, s->mask_sk, 32, c->p.threshold, xs, c->k);
    if (rc) {
        sodium_memzero(sh, sizeof sh);
        return s_abort(c, rc);
    }
    memcpy(s->held_seed[c->my_pos], sh_seed + (size_t)c->my_pos * 32, 32);
    memcpy(s->held_sk[c->my_pos], sh_sk + (size_t)c->my_pos * 32, 32);
    cnd_sa_hdr_put(out, CND_SECAGG_SHARES, c->p.round_id, c->me, CND_SECAGG_SERVER);
    cnd_buf_u32(out, count);
    uint8_t pt[S_SA_PT_BYTES], ct[S_SA_CT_BYTES], ad[S_SA_AD_BYTES];
    for (uint32_t j = 0; j < c->k; j++) {
        if (j == c->my_pos || !c->advertised[j]) continue;
        uint32_t v = c->nb[j];
        cnd_st_le32(pt, c->me);
        cnd_st_le32(pt + 4, v);
        memcpy(pt + 8, sh_seed + (size_t)j * 32, 32);
        memcpy(pt + 40, sh_sk + (size_t)j * 32, 32);
        cnd_sa_share_ad(ad, c->D, c->me, v);
        randombytes_buf(ct, 24);
        crypto_aead_xchacha20poly1305_ietf_encrypt(ct + 24, NULL, pt, sizeof pt, ad, sizeof ad,
                                                   NULL, ct, s->share_key[j]);
        cnd_buf_u32(out, v);
        cnd_buf_put(out, ct, sizeof ct);
    }
    sodium_memzero(pt, sizeof pt);
    sodium_memzero(sh, sizeof sh);
    if (out->err) return s_abort(c, cnd_errf(CND_ENOMEM, "out of memory"));
    c->state = ST_SHARED;
    return 0;
}

static int s_mask(cnd_secagg_client_t *c, cnd_buf_t *out, const uint8_t *msg, size_t len,
                  const uint32_t *x, const uint8_t *skip)
{
    int rc = s_state(c, ST_SHARED, "mask");
    if (rc) return rc;
    if (c->p.bits < 32) {
        for (uint32_t i = 0; i < c->p.len; i++)
            if (x[i] >> c->p.bits)
                return cnd_errf(CND_ERANGE,
                                "secagg client %u: input element %u = %u needs more "
                                "than %u bits",
                                c->me, i, x[i], c->p.bits);
    }
    char who[48];
    snprintf(who, sizeof who, "secagg client %u", c->me);
    cnd_rd_t r;
    cnd_secagg_hdr_t h;
    cnd_rd_init(&r, msg, len);
    if ((rc = cnd_sa_hdr_expect(&r, &h, CND_SECAGG_SHARES_FOR, c->p.round_id, c->me, who)))
        return s_abort(c, rc);
    uint32_t count = cnd_rd_u32(&r);
    if (r.err || count > c->k - 1 || cnd_rd_left(&r) != (size_t)count * (4 + S_SA_CT_BYTES))
        return s_abort(
            c, cnd_errf(CND_EPROTO, "%s: SHARES_FOR message has a bad count or length", who));
    s_secrets_t *s = c->sec;
    uint8_t pt[S_SA_PT_BYTES], ad[S_SA_AD_BYTES];
    for (uint32_t i = 0; i < count; i++) {
        uint32_t from = cnd_rd_u32(&r);
        const uint8_t *ct = cnd_rd_take(&r, S_SA_CT_BYTES);
        int j = cnd_secagg_graph_pos(c->g, c->me, from);
        if (j < 0 || from == c->me || !c->advertised[j] || c->received[j])
            return s_abort(c, cnd_errf(CND_EPROTO,
                                       "%s: share from client %u, which is not an advertised "
                                       "neighbour or sent twice",
                                       who, from));
        cnd_sa_share_ad(ad, c->D, from, c->me);
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, NULL, NULL, ct + 24, S_SA_CT_BYTES - 24,
                                                       ad, sizeof ad, ct, s->share_key[j]) != 0)
            return s_abort(c, cnd_errf(CND_ECRYPTO,
                                       "%s: encrypted share from client %u fails authentication "
                                       "(tampered, or not bound to this round and pair)",
                                       who, from));
        if (cnd_le32(pt) != from || cnd_le32(pt + 4) != c->me) {
            sodium_memzero(pt, sizeof pt);
            return s_abort(
                c, cnd_errf(CND_ECRYPTO, "%s: share from client %u names another pair", who, from));
        }
        memcpy(s->held_seed[j], pt + 8, 32);
        memcpy(s->held_sk[j], pt + 40, 32);
        c->received[j] = 1;
    }
    sodium_memzero(pt, sizeof pt);
    if (count + 1 < c->p.threshold)
        return s_abort(c, cnd_errf(CND_ESTATE,
                                   "%s: only %u neighbours shared keys; the threshold is %u", who,
                                   count, c->p.threshold));
    /* Masks: own seed, then one per neighbour that shared (it will mask with us as well). */
    size_t n_jobs = 0;
    cnd_sa_job_t jobs[CND_SECAGG_MAX_K]; /* seeds on the stack, wiped below */
    uint32_t *y = malloc((size_t)c->p.len * sizeof *y);
    if (!y) return s_abort(c, cnd_errf(CND_ENOMEM, "out of memory"));
    memcpy(jobs[n_jobs].seed, s->seed, 32);
    jobs[n_jobs++].negate = 0;
    for (uint32_t j = 0; j < c->k && !rc; j++) {
        if (j == c->my_pos || !c->received[j]) continue;
        uint32_t v = c->nb[j];
        if (skip && skip[v]) continue;
        if (cnd_sa_pair_key(jobs[n_jobs].seed, "mask", c->D, c->me, v, s->mask_sk,
                            c->peer_mask_pk[j]) != 0)
            rc = cnd_errf(CND_ECRYPTO, "%s: client %u's mask key is invalid", who, v);
        jobs[n_jobs++].negate = c->me > v; /* + for the smaller index, - for the larger */
    }
    if (!rc) {
        memcpy(y, x, (size_t)c->p.len * sizeof *y);
        rc = cnd_sa_apply_masks(y, c->p.len, cnd_sa_word_bits(c->p.bits), jobs, n_jobs, 1);
    }
    sodium_memzero(jobs, sizeof jobs);
    if (!rc) {
        cnd_sa_hdr_put(out, CND_SECAGG_MASKED, c->p.round_id, c->me, CND_SECAGG_SERVER);
        cnd_buf_u32(out, c->p.len);
        cnd_buf_u8(out, (uint8_t)c->p.bits);
        size_t nb = cnd_ring_packed_bytes(c->p.len, c->p.bits);
        if (cnd_buf_reserve(out, nb) == 0) {
            cnd_ring_pack(out->data + out->len, y, c->p.len, c->p.bits);
            out->len += nb;
        }
        if (out->err) rc = cnd_errf(CND_ENOMEM, "out of memory");
    }
    sodium_memzero(y, (size_t)c->p.len * sizeof *y);
    free(y);
    if (rc) return s_abort(c, rc);
    /* Only the shares held for neighbours are still needed. */
    sodium_memzero(s->enc_sk, 32);
    sodium_memzero(s->mask_sk, 32);
    sodium_memzero(s->seed, 32);
    sodium_memzero(s->share_key, sizeof s->share_key);
    c->state = ST_MASKED;
    return 0;
}

static int s_consistency(cnd_secagg_client_t *c, cnd_buf_t *out, const uint8_t *req, size_t len)
{
    int rc = s_state(c, ST_MASKED, "consistency");
    if (rc) return rc;
    char who[48];
    snprintf(who, sizeof who, "secagg client %u", c->me);
    cnd_rd_t r;
    cnd_secagg_hdr_t h;
    cnd_rd_init(&r, req, len);
    if ((rc = cnd_sa_hdr_expect(&r, &h, CND_SECAGG_CONSIST_REQ, c->p.round_id, c->me, who)))
        return s_abort(c, rc);
    uint32_t n = cnd_rd_u32(&r);
    size_t nb = cnd_sa_bitmap_bytes(c->p.n);
    const uint8_t *u2 = cnd_rd_take(&r, nb), *u3 = cnd_rd_take(&r, nb);
    if (r.err || n != c->p.n || cnd_rd_left(&r) != 0)
        return s_abort(c, cnd_errf(CND_EPROTO, "%s: malformed survivor sets", who));
    uint32_t n3 = 0;
    for (uint32_t u = 0; u < c->p.n; u++) {
        if (cnd_sa_bit(u3, u) && !cnd_sa_bit(u2, u))
            return s_abort(c, cnd_errf(CND_EPROTO,
                                       "%s: survivor set names client %u as masked but not shared",
                                       who, u));
        n3 += cnd_sa_bit(u3, u);
    }
    if (c->p.n % 8 && ((u2[nb - 1] | u3[nb - 1]) >> (c->p.n % 8)))
        return s_abort(c, cnd_errf(CND_EPROTO, "%s: survivor bitmaps have stray bits", who));
    if (!cnd_sa_bit(u3, c->me))
        return s_abort(c, cnd_errf(CND_EPERM,
                                   "%s: the survivor set leaves out this client, which sent its "
                                   "masked input; refusing to sign it",
                                   who));
    if (n3 < c->floor)
        return s_abort(c, cnd_errf(CND_EPERM,
                                   "%s: only %u survivors; distributed DP needs the noise of at "
                                   "least %u sites (dp_min_survivors) in any sum revealed",
                                   who, n3, c->floor));
    if (n3 < c->p.min_survivors)
        return s_abort(c, cnd_errf(CND_EPERM,
                                   "%s: only %u survivors; the round may not reveal a sum of "
                                   "fewer than %u",
                                   who, n3, c->p.min_survivors));
    for (uint32_t j = 0; j < c->k; j++) {
        uint32_t v = c->nb[j];
        if (j != c->my_pos && cnd_sa_bit(u2, v) != c->received[j])
            return s_abort(c, cnd_errf(CND_EPROTO,
                                       "%s: survivor set says client %u %s keys, but it %s this "
                                       "client a share",
                                       who, v, cnd_sa_bit(u2, v) ? "shared" : "did not share",
                                       c->received[j] ? "sent" : "never sent"));
        c->status[j] = cnd_sa_bit(u3, v) ? 1 : cnd_sa_bit(u2, v) ? 2 : 0;
    }
    if (!(c->u3 = malloc(nb))) return s_abort(c, cnd_errf(CND_ENOMEM, "out of memory"));
    memcpy(c->u3, u3, nb);
    cnd_sa_survivors_digest(c->sdigest, c->D, c->p.n, u2, u3);
    uint8_t m[S_SA_CONSIST_SIGNED], sig[CND_SIG_BYTES];
    cnd_sa_consist_signed(m, c->D, c->me, c->sdigest);
    if ((rc = cnd_sign(sig, c->id, "secagg-consistency", m, sizeof m))) return s_abort(c, rc);
    cnd_sa_hdr_put(out, CND_SECAGG_CONSIST, c->p.round_id, c->me, CND_SECAGG_SERVER);
    cnd_buf_put(out, sig, sizeof sig);
    if (out->err) return s_abort(c, cnd_errf(CND_ENOMEM, "out of memory"));
    c->state = ST_SIGNED;
    return 0;
}

/* Reads a strictly ascending list of at most max indices, all in N(me). */
static int s_read_list(cnd_secagg_client_t *c, cnd_rd_t *r, uint32_t *list, uint32_t *n,
                       const char *name, const char *who)
{
    *n = cnd_rd_u32(r);
    if (r->err || *n > c->k)
        return cnd_errf(CND_EPROTO, "%s: unmask request has a bad %s count", who, name);
    for (uint32_t i = 0; i < *n; i++) {
        list[i] = cnd_rd_u32(r);
        if (r->err) return cnd_errf(CND_EPROTO, "%s: unmask request is truncated", who);
        if (i && list[i] <= list[i - 1])
            return cnd_errf(CND_EPROTO, "%s: unmask request's %s list is not ascending", who, name);
        if (cnd_secagg_graph_pos(c->g, c->me, list[i]) < 0)
            return cnd_errf(CND_EPROTO, "%s: unmask request names client %u, not a neighbour", who,
                            list[i]);
    }
    return 0;
}

/* Checks the signatures of an unmask request: at least min_survivors entries, ascending indices
 * in the signed U3, each with the roster's identity at its index and a valid signature over this
 * client's survivor digest (distinct indices, so distinct identities: the roster has no twins). */
static int s_check_sigs(cnd_secagg_client_t *c, cnd_rd_t *r, const char *who)
{
    uint32_t ns = cnd_rd_u32(r);
    if (r->err || ns > c->p.n || cnd_rd_left(r) != (size_t)ns * S_SA_SIG_ENTRY)
        return cnd_errf(CND_EPROTO, "%s: unmask request has a bad signature list", who);
    if (ns < c->p.min_survivors)
        return cnd_errf(CND_ECRYPTO, "%s: only %u survivors signed the survivor set; %u are needed",
                        who, ns, c->p.min_survivors);
    uint32_t prev = 0;
    uint8_t m[S_SA_CONSIST_SIGNED];
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t u = cnd_rd_u32(r);
        const uint8_t *pk = cnd_rd_take(r, 32), *sig = cnd_rd_take(r, 64);
        if ((i && u <= prev) || u >= c->p.n || !cnd_sa_bit(c->u3, u))
            return cnd_errf(CND_EPROTO,
                            "%s: signature %u is from client %u, not an ascending survivor", who, i,
                            u);
        prev = u;
        if (sodium_memcmp(pk, c->roster[u].id_pk, 32) != 0)
            return cnd_errf(CND_ECRYPTO,
                            "%s: the survivor set is signed for client %u by an identity that is "
                            "not the roster's at that index",
                            who, u);
        cnd_sa_consist_signed(m, c->D, u, c->sdigest);
        if (cnd_verify(sig, pk, "secagg-consistency", m, sizeof m) != 0)
            return cnd_errf(CND_ECRYPTO,
                            "%s: client %u's signature is not over the survivor set this client "
                            "signed (the server shows different sets to different clients?)",
                            who, u);
    }
    return 0;
}

static int s_unmask(cnd_secagg_client_t *c, cnd_buf_t *out, const uint8_t *req, size_t len)
{
    int rc = s_state(c, ST_SIGNED, "unmask");
    if (rc) return rc;
    char who[48];
    snprintf(who, sizeof who, "secagg client %u", c->me);
    cnd_rd_t r;
    cnd_secagg_hdr_t h;
    cnd_rd_init(&r, req, len);
    uint32_t alive[CND_SECAGG_MAX_K], dropped[CND_SECAGG_MAX_K], na = 0, nd = 0;
    if ((rc = cnd_sa_hdr_expect(&r, &h, CND_SECAGG_UNMASK_REQ, c->p.round_id, c->me, who)) ||
        (rc = s_read_list(c, &r, alive, &na, "alive", who)) ||
        (rc = s_read_list(c, &r, dropped, &nd, "dropped", who)))
        return s_abort(c, rc);
    uint8_t kind[CND_SECAGG_MAX_K] = {0}; /* by position: 1 seed share, 2 mask-key share */
    for (uint32_t i = 0; i < na; i++) kind[cnd_secagg_graph_pos(c->g, c->me, alive[i])] = 1;
    for (uint32_t i = 0; i < nd; i++) {
        int j = cnd_secagg_graph_pos(c->g, c->me, dropped[i]);
        if (dropped[i] == c->me)
            return s_abort(c, cnd_errf(CND_EPERM,
                                       "%s: the server calls this client dropped, but it sent "
                                       "its masked input; refusing to reveal its mask key",
                                       who));
        if (kind[j])
            return s_abort(c, cnd_errf(CND_EPERM,
                                       "%s: the server asks for both the self-mask share and the "
                                       "mask-key share of client %u; refusing",
                                       who, dropped[i]));
        kind[j] = 2;
    }
    for (uint32_t j = 0; j < c->k; j++)
        if (kind[j] != c->status[j])
            return s_abort(c, cnd_errf(CND_EPROTO,
                                       "%s: unmask request treats client %u differently from the "
                                       "survivor set this client signed",
                                       who, c->nb[j]));
    if ((rc = s_check_sigs(c, &r, who))) return s_abort(c, rc);
    cnd_sa_hdr_put(out, CND_SECAGG_UNMASK, c->p.round_id, c->me, CND_SECAGG_SERVER);
    cnd_buf_u32(out, na + nd);
    for (uint32_t j = 0; j < c->k; j++) { /* positions ascend with indices */
        if (!kind[j]) continue;
        cnd_buf_u32(out, c->nb[j]);
        cnd_buf_u8(out, kind[j] == 1 ? S_SA_SHARE_SEED : S_SA_SHARE_MASKKEY);
        cnd_buf_put(out, kind[j] == 1 ? c->sec->held_seed[j] : c->sec->held_sk[j], 32);
    }
    if (out->err) return s_abort(c, cnd_errf(CND_ENOMEM, "out of memory"));
    sodium_memzero(c->sec, sizeof *c->sec);
    c->state = ST_DONE;
    return 0;
}

/* Public entry points: on failure, whatever a step appended to `out` is taken back. */
static int s_rollback(cnd_buf_t *out, size_t mark, int rc)
{
    if (rc && out->len > mark) {
        sodium_memzero(out->data + mark, out->len - mark);
        out->len = mark;
    }
    return rc;
}

int cnd_secagg_client_advertise(cnd_secagg_client_t *c, cnd_buf_t *out)
{
    size_t mark = out->len;
    return s_rollback(out, mark, s_advertise(c, out));
}

int cnd_secagg_client_share_keys(cnd_secagg_client_t *c, cnd_buf_t *out, const uint8_t *keys_msg,
                                 size_t len)
{
    size_t mark = out->len;
    return s_rollback(out, mark, s_share_keys(c, out, keys_msg, len));
}

int cnd_secagg_client_mask(cnd_secagg_client_t *c, cnd_buf_t *out, const uint8_t *shares_msg,
                           size_t len, const uint32_t *x)
{
    size_t mark = out->len;
    return s_rollback(out, mark, s_mask(c, out, shares_msg, len, x, NULL));
}

int cnd_sa_client_mask_sim(cnd_secagg_client_t *c, cnd_buf_t *out, const uint8_t *shares_msg,
                           size_t len, const uint32_t *x, const uint8_t *skip)
{
    size_t mark = out->len;
    return s_rollback(out, mark, s_mask(c, out, shares_msg, len, x, skip));
}

int cnd_secagg_client_require(cnd_secagg_client_t *c, uint32_t floor)
{
    c->floor = floor;
    if (c->p.min_survivors < floor)
        return cnd_errf(CND_EPERM,
                        "the round's SecAgg+ survivor minimum %u is below %u: it would let the "
                        "coordinator unmask a sum of fewer sites than distributed DP needs "
                        "(dp_min_survivors)",
                        c->p.min_survivors, floor);
    if (c->p.degree < c->p.n - 1 && c->p.threshold < floor)
        return cnd_errf(CND_EPERM,
                        "the round's neighbour graph (degree %u of %u sites) with threshold %u "
                        "would let the coordinator unmask the sum of a group of %u sites, fewer "
                        "than the %u distributed DP needs (dp_min_survivors)",
                        c->p.degree, c->p.n, c->p.threshold, c->p.threshold, floor);
    return 0;
}

int cnd_secagg_client_consistency(cnd_secagg_client_t *c, cnd_buf_t *out, const uint8_t *req,
                                  size_t len)
{
    size_t mark = out->len;
    return s_rollback(out, mark, s_consistency(c, out, req, len));
}

int cnd_secagg_client_unmask(cnd_secagg_client_t *c, cnd_buf_t *out, const uint8_t *req, size_t len)
{
    size_t mark = out->len;
    return s_rollback(out, mark, s_unmask(c, out, req, len));
}
