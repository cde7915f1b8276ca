/*
 * cmd_keygen.c: `condenser keygen --out DIR`, creating a node identity (crypto/identity.h) and
 * printing what an operator hands to the federation CA: the public key, its fingerprint, and the
 * CurveZMQ (X25519, Z85) form that transport configuration uses. `--show` prints the same for an
 * existing identity without changing anything.
 */
#include "json.h"
#include "cli.h"
#include "commands.h"
#include "digest.h"
#include "identity.h"
#include "z85.h"

#include <limits.h>
#include <sodium.h>
#include <stdio.h>

static int s_print(const cnd_identity_t *id, const char *dir, int json)
{
    uint8_t cpk[CND_X25519_BYTES], csk[CND_X25519_BYTES];
    int rc = cnd_identity_curve_keypair(cpk, csk, id);
    sodium_memzero(csk, sizeof csk);
    if (rc) return rc;
    char hex[2 * CND_ED25519_PK_BYTES + 1], fp[CND_FINGERPRINT_HEX], z85[CND_Z85_KEY_CHARS + 1];
    char chex[2 * CND_X25519_BYTES + 1], key[PATH_MAX + 32], pub[PATH_MAX + 32];
    if ((rc = cnd_z85_encode(z85, cpk, sizeof cpk))) return rc;
    snprintf(key, sizeof key, "%s/%s", dir, CND_IDENTITY_KEY_FILE);
    snprintf(pub, sizeof pub, "%s/%s", dir, CND_IDENTITY_PUB_FILE);
    cnd_hex(hex, cnd_identity_pk(id), CND_ED25519_PK_BYTES);
    cnd_pubkey_fingerprint(fp, cnd_identity_pk(id));
    cnd_hex(chex, cpk, sizeof cpk);
    if (!json) {
        printf("identity     %s (secret, mode 0600)\n", key);
        printf("public file  %s\n", pub);
        printf("ed25519      %s\n", hex);
        printf("fingerprint  SHA256:%s\n", fp);
        printf("curve (hex)  %s\n", chex);
        printf("curve (z85)  %s\n", z85);
        return 0;
    }
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    const char *k[] = {"identity",    "public_file", "ed25519",
                       "fingerprint", "curve_hex",   "curve_z85"};
    const char *v[] = {key, pub, hex, fp, chex, z85};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        cnd_jw_key(&w, k[i]);
        cnd_jw_str(&w, v[i]);
    }
    cnd_jw_obj_end(&w);
    const char *t = cnd_jw_text(&w);
    if (t)
        printf("%s\n", t);
    else
        rc = cnd_errf(CND_ENOMEM, "keygen: out of memory");
    cnd_jw_free(&w);
    return rc;
}

int cnd_cmd_keygen(int argc, char **argv)
{
    const char *out = NULL;
    int force = 0, show = 0, json = 0;
    const cnd_opt_t opts[] = {
        {"out", CND_OPT_STR, &out, "DIR", "directory for identity.key and identity.pub (required)"},
        {"force", CND_OPT_FLAG, &force, NULL, "replace an existing identity in DIR"},
        {"show", CND_OPT_FLAG, &show, NULL, "print the identity already in DIR; change nothing"},
        {"json", CND_OPT_FLAG, &json, NULL, "print it as JSON"},
        {0}};
    const cnd_cli_t cli = {
        "condenser keygen --out DIR [--force | --show] [--json]",
        "Creates a node identity: an Ed25519 key pair whose secret half is written to "
        "DIR/identity.key with mode 0600 and whose public half goes to DIR/identity.pub. Prints "
        "the public key, its SHA-256 fingerprint and its X25519 form (the node's CurveZMQ key) "
        "in hex and Z85. Give identity.pub to the federation CA (condenser ca issue --pubkey).",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!out) return cnd_errf(CND_EINVAL, "--out DIR is required (try --help)");
    if (show && force) return cnd_errf(CND_EINVAL, "--show and --force exclude each other");
    cnd_identity_t *id = NULL;
    if (show) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", out, CND_IDENTITY_KEY_FILE) >= (int)sizeof path)
            return cnd_errf(CND_EINVAL, "%s: path too long", out);
        rc = cnd_identity_load(&id, path);
    } else {
        rc = cnd_identity_generate(&id);
        if (!rc) rc = cnd_identity_save(id, out, force);
    }
    if (!rc) rc = s_print(id, out, json);
    cnd_identity_destroy(&id);
    return rc;
}
