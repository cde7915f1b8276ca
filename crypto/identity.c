/*
 * identity.c: see identity.h. The secret file is read with open+fstat on the same descriptor, so
 * the permission check and the read cannot be split by a rename, and every buffer that held the
 * seed is wiped before returning on every path.
 */
#include "identity.h"
#include "digest.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAGIC      "CNDIDSK1"
#define S_MAGIC_LEN  8
#define S_FILE_BYTES (S_MAGIC_LEN + 32 + 32)
#define S_PUB_PREFIX "condenser-ed25519 "

struct cnd_identity {
    uint8_t pk[crypto_sign_PUBLICKEYBYTES]; /* Ed25519 public key */
    uint8_t sk[crypto_sign_SECRETKEYBYTES]; /* libsodium form: seed || pk */
};

int cnd_crypto_init(void)
{
    if (sodium_init() < 0) return cnd_errf(CND_ECRYPTO, "libsodium failed to initialise");
    return 0;
}

static int s_alloc(cnd_identity_t **out)
{
    *out = NULL;
    int rc = cnd_crypto_init();
    if (rc) return rc;
    cnd_identity_t *id = sodium_malloc(sizeof *id);
    if (!id) return cnd_errf(CND_ENOMEM, "cannot allocate secure memory for an identity");
    *out = id;
    return 0;
}

int cnd_identity_generate(cnd_identity_t **out)
{
    int rc = s_alloc(out);
    if (rc) return rc;
    crypto_sign_keypair((*out)->pk, (*out)->sk);
    return 0;
}

int cnd_identity_from_seed(cnd_identity_t **out, const uint8_t seed[32])
{
    int rc = s_alloc(out);
    if (rc) return rc;
    crypto_sign_seed_keypair((*out)->pk, (*out)->sk, seed);
    return 0;
}

void cnd_identity_destroy(cnd_identity_t **id)
{
    if (!id || !*id) return;
    sodium_free(*id); /* wipes before unmapping */
    *id = NULL;
}

const uint8_t *cnd_identity_pk(const cnd_identity_t *id)
{
    return id->pk;
}

void cnd_identity_sign(uint8_t sig[CND_ED25519_SIG_BYTES], const cnd_identity_t *id,
                       const void *msg, size_t len)
{
    crypto_sign_detached(sig, NULL, msg, len, id->sk);
}

int cnd_identity_curve_keypair(uint8_t pk[CND_X25519_BYTES], uint8_t sk[CND_X25519_BYTES],
                               const cnd_identity_t *id)
{
    if (crypto_sign_ed25519_pk_to_curve25519(pk, id->pk) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(sk, id->sk) != 0) {
        sodium_memzero(sk, CND_X25519_BYTES);
        return cnd_errf(CND_ECRYPTO, "identity key has no X25519 form");
    }
    return 0;
}

int cnd_pubkey_to_curve(uint8_t out[CND_X25519_BYTES], const uint8_t pk[CND_ED25519_PK_BYTES])
{
    int rc = cnd_crypto_init();
    if (rc) return rc;
    if (crypto_sign_ed25519_pk_to_curve25519(out, pk) != 0)
        return cnd_errf(CND_ECRYPTO, "public key is not a valid Ed25519 point");
    return 0;
}

char *cnd_pubkey_fingerprint(char out[CND_FINGERPRINT_HEX], const uint8_t pk[CND_ED25519_PK_BYTES])
{
    uint8_t d[CND_SHA256_BYTES];
    cnd_sha256(d, pk, CND_ED25519_PK_BYTES);
    return cnd_hex(out, d, sizeof d);
}

static int s_join(char *out, size_t n, const char *dir, const char *file)
{
    if (snprintf(out, n, "%s/%s", dir, file) >= (int)n)
        return cnd_errf(CND_EINVAL, "%s: path too long", dir);
    return 0;
}

int cnd_pubkey_write(const char *path, const uint8_t pk[CND_ED25519_PK_BYTES])
{
    char line[sizeof S_PUB_PREFIX + 2 * CND_ED25519_PK_BYTES + 2];
    char hex[2 * CND_ED25519_PK_BYTES + 1];
    int n = snprintf(line, sizeof line, "%s%s\n", S_PUB_PREFIX, cnd_hex(hex, pk, 32));
    return cnd_file_write_atomic(path, line, (size_t)n, 0644);
}

int cnd_pubkey_parse(uint8_t pk[CND_ED25519_PK_BYTES], const char *text, const char *what)
{
    const char *p = text;
    if (strncmp(p, S_PUB_PREFIX, strlen(S_PUB_PREFIX)) == 0) p += strlen(S_PUB_PREFIX);
    size_t hexlen = 0;
    while (p[hexlen] && strchr("0123456789abcdefABCDEF", p[hexlen])) hexlen++;
    if (hexlen != 2 * CND_ED25519_PK_BYTES)
        return cnd_errf(CND_EFORMAT,
                        "%s: expected '%s' followed by 64 hex digits, found %zu hex digits", what,
                        S_PUB_PREFIX, hexlen);
    for (const char *q = p + hexlen; *q; q++)
        if (*q != '\n' && *q != '\r' && *q != ' ' && *q != '\t')
            return cnd_errf(CND_EFORMAT, "%s: unexpected text after the key", what);
    char hex[2 * CND_ED25519_PK_BYTES + 1];
    memcpy(hex, p, sizeof hex - 1);
    hex[sizeof hex - 1] = 0;
    if (cnd_unhex(pk, CND_ED25519_PK_BYTES, hex) != 0)
        return cnd_errf(CND_EFORMAT, "%s: bad hex in the key", what);
    return 0;
}

int cnd_pubkey_read(uint8_t pk[CND_ED25519_PK_BYTES], const char *path)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = cnd_file_read(path, 4096, &data, &len);
    if (rc) return rc;
    if (memchr(data, 0, len)) {
        free(data);
        return cnd_errf(CND_EFORMAT, "%s: not a public key file (binary data)", path);
    }
    rc = cnd_pubkey_parse(pk, (const char *)data, path);
    free(data);
    return rc;
}

int cnd_identity_save(const cnd_identity_t *id, const char *dir, int overwrite)
{
    char kpath[PATH_MAX], ppath[PATH_MAX];
    int rc = s_join(kpath, sizeof kpath, dir, CND_IDENTITY_KEY_FILE);
    if (!rc) rc = s_join(ppath, sizeof ppath, dir, CND_IDENTITY_PUB_FILE);
    if (!rc) rc = cnd_mkdir_p(dir, 0700);
    if (rc) return rc;
    if (!overwrite && cnd_file_exists(kpath))
        return cnd_errf(CND_EEXIST, "%s already exists; refusing to replace an identity", kpath);
    uint8_t *buf = sodium_malloc(S_FILE_BYTES);
    if (!buf) return cnd_errf(CND_ENOMEM, "cannot allocate secure memory");
    memcpy(buf, S_MAGIC, S_MAGIC_LEN);
    memcpy(buf + S_MAGIC_LEN, id->sk, 32); /* libsodium's sk starts with the seed */
    memcpy(buf + S_MAGIC_LEN + 32, id->pk, 32);
    rc = cnd_file_write_atomic(kpath, buf, S_FILE_BYTES, 0600);
    sodium_free(buf);
    if (rc) return rc;
    return cnd_pubkey_write(ppath, id->pk);
}

int cnd_identity_load(cnd_identity_t **out, const char *key_path)
{
    *out = NULL;
    int rc = cnd_crypto_init();
    if (rc) return rc;
    int fd = open(key_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cnd_errf(CND_EIO, "%s: cannot open: %s", key_path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cnd_errf(CND_EIO, "%s: not a regular file", key_path);
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return cnd_errf(CND_EPERM,
                        "%s: permissions %04o let other users access this secret key; run "
                        "'chmod 600 %s'",
                        key_path, (unsigned)(st.st_mode & 07777), key_path);
    }
    if (st.st_size != S_FILE_BYTES) {
        close(fd);
        return cnd_errf(CND_EFORMAT, "%s: %lld bytes, an identity key file has %d", key_path,
                        (long long)st.st_size, S_FILE_BYTES);
    }
    uint8_t *buf = sodium_malloc(S_FILE_BYTES);
    if (!buf) {
        close(fd);
        return cnd_errf(CND_ENOMEM, "cannot allocate secure memory");
    }
    size_t got = 0;
    while (got < S_FILE_BYTES) {
        ssize_t r = read(fd, buf + got, S_FILE_BYTES - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != S_FILE_BYTES) {
        rc = cnd_errf(CND_EIO, "%s: short read (%zu of %d bytes)", key_path, got, S_FILE_BYTES);
    } else if (memcmp(buf, S_MAGIC, S_MAGIC_LEN) != 0) {
        rc = cnd_errf(CND_EFORMAT, "%s: not a condenser identity key (bad magic)", key_path);
    } else if ((rc = cnd_identity_from_seed(out, buf + S_MAGIC_LEN)) == 0 &&
               sodium_memcmp((*out)->pk, buf + S_MAGIC_LEN + 32, 32) != 0) {
        cnd_identity_destroy(out);
        rc = cnd_errf(CND_ECORRUPT,
                      "%s: stored public key does not match the secret seed (file damaged)",
                      key_path);
    }
    sodium_free(buf);
    return rc;
}
