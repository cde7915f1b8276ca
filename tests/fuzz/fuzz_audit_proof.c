/*
 * fuzz_audit_proof.c: proof files and checkpoint notes (coordinator/audit_proof.c and the note
 * parser in coordinator/audit_log.c), what `condenser audit check-proof FILE --key PUB` and
 * `audit verify --checkpoint NOTE` read from whoever hands an auditor a file.
 *
 * The log key is fixed (seed bytes all 0x41, as in mkcorpus.c), so the proofs in
 * corpus/audit_proof/ verify. Each input is
 *   - parsed as a checkpoint note (cnd_audit_cp_parse), whose parse must be a fixed point of
 *     cnd_audit_cp_format;
 *   - checked as a proof file as it is: a proof that passes must say what it proved;
 *   - checked again with every checkpoint note in it re-signed by the test key (and, for an
 *     inclusion proof of a one-entry tree, the root set to the entry's leaf hash), so that
 *     mutated notes, sizes and times get past the signatures to the code behind them.
 */
#include "json.h"
#include "audit_log.h"
#include "audit_proof.h"
#include "fuzz.h"
#include "merkle.h"

#include <sodium.h>

static uint8_t s_pk[32], s_sk[64];

static void s_init(void)
{
    static int done;
    if (done) return;
    uint8_t seed[32];
    memset(seed, 0x41, sizeof seed);
    if (sodium_init() < 0) abort();
    crypto_sign_seed_keypair(s_pk, s_sk, seed);
    done = 1;
}

static void s_note(const uint8_t *data, size_t size)
{
    cnd_audit_cp_t cp;
    if (cnd_audit_cp_parse(&cp, (const char *)data, size) == 0) {
        fuzz_note("checkpoint note parsed");
        fuzz_sink += cnd_audit_cp_verify(&cp, s_pk);
        memcpy(cp.key, s_pk, 32);
        cnd_buf_t b;
        cnd_buf_init(&b);
        cnd_audit_cp_format(&b, &cp);
        cnd_audit_cp_t again;
        if (b.err || cnd_audit_cp_parse(&again, (const char *)b.data, b.len) != 0) abort();
        if (again.tree_size != cp.tree_size || again.time_ms != cp.time_ms ||
            memcmp(again.root, cp.root, 32) != 0 || strcmp(again.origin, cp.origin) != 0 ||
            memcmp(again.sig, cp.sig, 64) != 0)
            abort();
        cnd_buf_free(&b);
    }
    fuzz_touch_error();
}

static void s_check(const char *text, size_t len)
{
    char summary[1024];
    if (cnd_audit_check_proof(summary, sizeof summary, text, len, s_pk) == 0) {
        if (!summary[0]) abort();
        fuzz_note("proof checked");
    }
    fuzz_touch_error();
}

/* Re-signs the note held in member `key` of proof p; `entry` (may be NULL) is the entry of a
 * one-entry inclusion proof, whose leaf hash becomes the root. */
static void s_resign(cnd_json_t *p, const char *key, const char *entry)
{
    cnd_json_t *v = (cnd_json_t *)cnd_json_get(p, key);
    if (!v || v->type != CND_JSON_STR) return;
    cnd_audit_cp_t cp;
    if (cnd_audit_cp_parse(&cp, v->s, strlen(v->s)) != 0) return;
    if (entry && cp.tree_size == 1) cnd_merkle_leaf_hash(cp.root, entry, strlen(entry));
    memcpy(cp.key, s_pk, 32);
    cnd_buf_t body, note;
    cnd_buf_init(&body);
    cnd_buf_init(&note);
    cnd_audit_cp_body(&body, &cp);
    if (body.err) abort();
    crypto_sign_detached(cp.sig, NULL, body.data, body.len, s_sk);
    cnd_audit_cp_format(&note, &cp);
    cnd_buf_u8(&note, 0);
    if (note.err) abort();
    char *s = strdup((const char *)note.data);
    if (!s) abort();
    free(v->s);
    v->s = s;
    cnd_buf_free(&body);
    cnd_buf_free(&note);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_init();
    s_note(data, size);
    s_check((const char *)data, size);
    cnd_json_t *p = NULL;
    if (cnd_json_parse(&p, (const char *)data, size) == 0) {
        const char *type = cnd_json_str(cnd_json_get(p, "type"));
        const char *entry = cnd_json_str(cnd_json_get(p, "entry"));
        s_resign(p, "checkpoint", type && !strcmp(type, "inclusion") ? entry : NULL);
        s_resign(p, "old_checkpoint", NULL);
        s_resign(p, "new_checkpoint", NULL);
        cnd_buf_t t;
        cnd_buf_init(&t);
        if (cnd_json_canon(&t, p) != 0) abort();
        s_check((const char *)t.data, t.len);
        cnd_buf_free(&t);
        cnd_json_free(&p);
    }
    fuzz_touch_error();
    return 0;
}
