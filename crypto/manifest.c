/*
 * manifest.c: see manifest.h. Encoding and decoding are strict mirror images: the decoder
 * rejects anything the encoder could not have produced (over-long or non-printable strings,
 * unknown flags, a has_base other than 0/1, trailing bytes), so one manifest has exactly one
 * byte representation and a signature over it means one thing.
 */
#include "manifest.h"
#include "digest.h"
#include "sign.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BODY_MAGIC "CNDMAN01"
#define S_CONTEXT    "manifest"
#define S_BODY_MAX                                                                                 \
    (8 + 4 + CND_MANIFEST_NAME_MAX + 4 + CND_MANIFEST_TARGET_MAX + 3 * 8 + 32 + 8 + 4 + 1 + 32)

_Static_assert(CND_MANIFEST_ENV_TAIL == 32 + CND_SIG_BYTES, "envelope tail: signer key, signature");
_Static_assert(sizeof CND_MANIFEST_ENV_MAGIC - 1 + 4 == CND_MANIFEST_ENV_HEAD,
               "envelope head: magic, body length");

static int s_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e) return 0;
    return 1;
}

static int s_check_fields(const cnd_manifest_t *m)
{
    size_t nl = strnlen(m->name, sizeof m->name), tl = strnlen(m->target, sizeof m->target);
    if (nl == 0 || nl > CND_MANIFEST_NAME_MAX || !s_printable(m->name, nl))
        return cnd_errf(CND_EINVAL, "manifest name must be 1..%d printable ASCII bytes",
                        CND_MANIFEST_NAME_MAX);
    if (tl > CND_MANIFEST_TARGET_MAX || !s_printable(m->target, tl))
        return cnd_errf(CND_EINVAL, "manifest target must be at most %d printable ASCII bytes",
                        CND_MANIFEST_TARGET_MAX);
    if (m->flags & ~CND_MANIFEST_FLAGS_ALL)
        return cnd_errf(CND_EINVAL, "manifest flags 0x%x include unknown bits", m->flags);
    if (m->has_base != 0 && m->has_base != 1)
        return cnd_errf(CND_EINVAL, "manifest has_base must be 0 or 1");
    return 0;
}

int cnd_manifest_encode(cnd_buf_t *out, const cnd_manifest_t *m)
{
    int rc = s_check_fields(m);
    if (rc) return rc;
    cnd_buf_put(out, S_BODY_MAGIC, 8);
    cnd_buf_str(out, m->name);
    cnd_buf_str(out, m->target);
    cnd_buf_u64(out, m->sequence);
    cnd_buf_u64(out, m->version);
    cnd_buf_u64(out, m->length);
    cnd_buf_put(out, m->digest, 32);
    cnd_buf_u64(out, (uint64_t)m->expires);
    cnd_buf_u32(out, m->flags);
    cnd_buf_u8(out, (uint8_t)m->has_base);
    if (m->has_base) cnd_buf_put(out, m->base_digest, 32);
    return out->err ? cnd_errf(CND_ENOMEM, "out of memory encoding a manifest") : 0;
}

static int s_rd_string(char *dst, size_t cap, cnd_rd_t *r, size_t max, int allow_empty,
                       const char *field)
{
    uint32_t n = cnd_rd_u32(r);
    if (r->err) return cnd_errf(CND_EFORMAT, "manifest: truncated before %s", field);
    if (n > max || (!allow_empty && n == 0))
        return cnd_errf(CND_EFORMAT, "manifest: %s length %u outside [%d, %zu]", field, n,
                        !allow_empty, max);
    const uint8_t *p = cnd_rd_take(r, n);
    if (!p) return cnd_errf(CND_EFORMAT, "manifest: truncated inside %s", field);
    if (!s_printable((const char *)p, n))
        return cnd_errf(CND_EFORMAT, "manifest: %s has non-printable bytes", field);
    if (n >= cap) return cnd_errf(CND_EFORMAT, "manifest: %s too long", field);
    memcpy(dst, p, n);
    dst[n] = 0;
    return 0;
}

int cnd_manifest_decode(cnd_manifest_t *m, const uint8_t *data, size_t len)
{
    memset(m, 0, sizeof *m);
    cnd_rd_t r;
    cnd_rd_init(&r, data, len);
    const uint8_t *magic = cnd_rd_take(&r, 8);
    if (!magic || memcmp(magic, S_BODY_MAGIC, 8) != 0)
        return cnd_errf(CND_EFORMAT, "manifest: bad magic (not a CNDMAN01 body)");
    int rc = s_rd_string(m->name, sizeof m->name, &r, CND_MANIFEST_NAME_MAX, 0, "name");
    if (!rc)
        rc = s_rd_string(m->target, sizeof m->target, &r, CND_MANIFEST_TARGET_MAX, 1, "target");
    if (rc) {
        memset(m, 0, sizeof *m);
        return rc;
    }
    m->sequence = cnd_rd_u64(&r);
    m->version = cnd_rd_u64(&r);
    m->length = cnd_rd_u64(&r);
    const uint8_t *d = cnd_rd_take(&r, 32);
    if (d) memcpy(m->digest, d, 32);
    m->expires = (int64_t)cnd_rd_u64(&r);
    m->flags = cnd_rd_u32(&r);
    uint8_t hb = cnd_rd_u8(&r);
    if (r.err)
        rc = cnd_errf(CND_EFORMAT, "manifest: truncated in the fixed fields");
    else if (m->flags & ~CND_MANIFEST_FLAGS_ALL)
        rc = cnd_errf(CND_EFORMAT, "manifest: unknown flags 0x%x", m->flags);
    else if (hb > 1)
        rc = cnd_errf(CND_EFORMAT, "manifest: has_base is %u, must be 0 or 1", hb);
    if (!rc && hb) {
        const uint8_t *b = cnd_rd_take(&r, 32);
        if (!b)
            rc = cnd_errf(CND_EFORMAT, "manifest: truncated in the base digest");
        else
            memcpy(m->base_digest, b, 32);
    }
    m->has_base = hb;
    if (!rc && cnd_rd_left(&r) != 0)
        rc = cnd_errf(CND_EFORMAT, "manifest: %zu unexpected trailing bytes", cnd_rd_left(&r));
    if (rc) memset(m, 0, sizeof *m);
    return rc;
}

int cnd_manifest_sign(cnd_buf_t *out, const cnd_manifest_t *m, const cnd_identity_t *id)
{
    cnd_buf_t body;
    cnd_buf_init(&body);
    int rc = cnd_manifest_encode(&body, m);
    uint8_t sig[CND_SIG_BYTES];
    if (!rc) rc = cnd_sign(sig, id, S_CONTEXT, body.data, body.len);
    if (!rc) {
        cnd_buf_put(out, CND_MANIFEST_ENV_MAGIC, 8);
        cnd_buf_blob(out, body.data, (uint32_t)body.len);
        cnd_buf_put(out, cnd_identity_pk(id), 32);
        cnd_buf_put(out, sig, sizeof sig);
        if (out->err) rc = cnd_errf(CND_ENOMEM, "out of memory signing a manifest");
    }
    cnd_buf_free(&body);
    return rc;
}

const char *cnd_manifest_fail_name(cnd_manifest_fail_t why)
{
    switch (why) {
    case CND_MANIFEST_OK: return "ok";
    case CND_MANIFEST_MALFORMED: return "malformed";
    case CND_MANIFEST_UNTRUSTED_KEY: return "untrusted key";
    case CND_MANIFEST_BAD_SIGNATURE: return "bad signature";
    case CND_MANIFEST_EXPIRED: return "expired";
    case CND_MANIFEST_OLDER: return "older sequence";
    case CND_MANIFEST_DOWNGRADE: return "downgrade";
    case CND_MANIFEST_WRONG_TARGET: return "wrong device class";
    }
    return "unknown";
}

/* 1 if `cls` is one of the comma-separated entries of `list` (or list is empty). */
static int s_target_match(const char *list, const char *cls)
{
    if (!list[0]) return 1;
    size_t cl = strlen(cls);
    for (const char *p = list;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == cl && memcmp(p, cls, n) == 0) return 1;
        if (!e) return 0;
        p = e + 1;
    }
}

static int s_fail(cnd_manifest_fail_t *why, cnd_manifest_fail_t reason, int code)
{
    if (why) *why = reason;
    return code;
}

int cnd_manifest_body(const uint8_t **body, size_t *body_len, const uint8_t *signed_bytes,
                      size_t len)
{
    *body = NULL;
    *body_len = 0;
    if (len < CND_MANIFEST_ENV_HEAD + CND_MANIFEST_ENV_TAIL ||
        memcmp(signed_bytes, CND_MANIFEST_ENV_MAGIC, 8) != 0)
        return cnd_errf(CND_EFORMAT, "not a signed manifest (%s)", CND_MANIFEST_ENV_MAGIC);
    uint32_t blen = cnd_le32(signed_bytes + 8);
    if (blen > S_BODY_MAX || (size_t)blen != len - CND_MANIFEST_ENV_HEAD - CND_MANIFEST_ENV_TAIL)
        return cnd_errf(CND_EFORMAT, "body length %u does not fit its %zu bytes", blen, len);
    *body = signed_bytes + CND_MANIFEST_ENV_HEAD;
    *body_len = blen;
    return 0;
}

int cnd_manifest_decode_signed(cnd_manifest_t *m, const uint8_t *signed_bytes, size_t len)
{
    const uint8_t *body;
    size_t blen;
    int rc = cnd_manifest_body(&body, &blen, signed_bytes, len);
    if (rc) {
        memset(m, 0, sizeof *m);
        return rc;
    }
    return cnd_manifest_decode(m, body, blen);
}

int cnd_manifest_signer(uint8_t pk[32], const uint8_t *signed_bytes, size_t len)
{
    const uint8_t *body;
    size_t blen;
    int rc = cnd_manifest_body(&body, &blen, signed_bytes, len);
    if (!rc) memcpy(pk, body + blen, 32);
    return rc;
}

int cnd_manifest_verify(cnd_manifest_t *m, cnd_manifest_fail_t *why, const uint8_t *signed_bytes,
                        size_t len, const cnd_manifest_policy_t *policy)
{
    memset(m, 0, sizeof *m);
    if (why) *why = CND_MANIFEST_OK;
    const uint8_t *body;
    size_t blen;
    if (cnd_manifest_body(&body, &blen, signed_bytes, len)) {
        char d[160];
        snprintf(d, sizeof d, "%s", cnd_err_detail());
        return s_fail(why, CND_MANIFEST_MALFORMED, cnd_errf(CND_EFORMAT, "manifest: %s", d));
    }
    const uint8_t *signer = body + blen;
    const uint8_t *sig = signer + 32;
    cnd_manifest_t tmp;
    int rc = cnd_manifest_decode(&tmp, body, blen);
    if (rc) return s_fail(why, CND_MANIFEST_MALFORMED, rc);

    size_t k = 0;
    while (k < policy->n_keys && sodium_memcmp(policy->keys[k], signer, 32) != 0) k++;
    if (k == policy->n_keys) {
        char fp[CND_FINGERPRINT_HEX];
        return s_fail(why, CND_MANIFEST_UNTRUSTED_KEY,
                      cnd_errf(CND_ECRYPTO,
                               "manifest '%s': signed by key SHA256:%.16s..., which is not trusted",
                               tmp.name, cnd_pubkey_fingerprint(fp, signer)));
    }
    if (cnd_verify(sig, signer, S_CONTEXT, body, blen) != 0)
        return s_fail(why, CND_MANIFEST_BAD_SIGNATURE,
                      cnd_errf(CND_ECRYPTO,
                               "manifest '%s': signature does not verify (bytes were changed)",
                               tmp.name));
    if (policy->now >= tmp.expires)
        return s_fail(why, CND_MANIFEST_EXPIRED,
                      cnd_errf(CND_ETIMEOUT,
                               "manifest '%s': expired at %" PRId64 " (now %" PRId64 ")", tmp.name,
                               tmp.expires, policy->now));
    if (tmp.sequence < policy->min_sequence)
        return s_fail(why, CND_MANIFEST_OLDER,
                      cnd_errf(CND_ESTATE,
                               "manifest '%s': sequence %" PRIu64 " is older than %" PRIu64
                               " (replayed manifest)",
                               tmp.name, tmp.sequence, policy->min_sequence));
    if (tmp.version < policy->current_version && !(tmp.flags & CND_MANIFEST_ROLLBACK))
        return s_fail(why, CND_MANIFEST_DOWNGRADE,
                      cnd_errf(CND_EPERM,
                               "manifest '%s': version %" PRIu64 " is below the installed %" PRIu64
                               " and the manifest is not a signed rollback",
                               tmp.name, tmp.version, policy->current_version));
    if (policy->device_class && !s_target_match(tmp.target, policy->device_class))
        return s_fail(why, CND_MANIFEST_WRONG_TARGET,
                      cnd_errf(CND_EPERM, "manifest '%s': targets '%s', not device class '%s'",
                               tmp.name, tmp.target, policy->device_class));
    *m = tmp;
    return 0;
}

int cnd_manifest_check_digest(const cnd_manifest_t *m, const uint8_t digest[32], uint64_t len)
{
    if (len != m->length)
        return cnd_errf(CND_ECORRUPT, "artifact '%s': %" PRIu64 " bytes, manifest says %" PRIu64,
                        m->name, len, m->length);
    if (sodium_memcmp(digest, m->digest, 32) != 0)
        return cnd_errf(CND_ECORRUPT, "artifact '%s': SHA-256 differs from the signed digest",
                        m->name);
    return 0;
}

int cnd_manifest_check_artifact(const cnd_manifest_t *m, const void *data, size_t len)
{
    if ((uint64_t)len != m->length) return cnd_manifest_check_digest(m, m->digest, len);
    uint8_t d[32];
    cnd_sha256(d, data, len);
    return cnd_manifest_check_digest(m, d, len);
}
