/*
 * digest.c: SHA-256 via OpenSSL EVP (see digest.h).
 */
#include "digest.h"
#include "error.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

struct cnd_sha256 {
    EVP_MD_CTX *md; /* owned OpenSSL context, initialised for SHA-256 */
};

void cnd_sha256(uint8_t out[CND_SHA256_BYTES], const void *data, size_t len)
{
    unsigned int n = 0;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

cnd_sha256_t *cnd_sha256_new(void)
{
    cnd_sha256_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->md = EVP_MD_CTX_new();
    if (!c->md || !EVP_DigestInit_ex(c->md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(c->md);
        free(c);
        return NULL;
    }
    return c;
}

void cnd_sha256_update(cnd_sha256_t *ctx, const void *data, size_t len)
{
    EVP_DigestUpdate(ctx->md, data, len);
}

void cnd_sha256_final(cnd_sha256_t *ctx, uint8_t out[CND_SHA256_BYTES])
{
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx->md, out, &n);
    EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL);
}

void cnd_sha256_destroy(cnd_sha256_t **ctx)
{
    if (!ctx || !*ctx) return;
    EVP_MD_CTX_free((*ctx)->md);
    free(*ctx);
    *ctx = NULL;
}

char *cnd_hex(char *out, const uint8_t *bytes, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = 0;
    return out;
}

static int s_nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int cnd_unhex(uint8_t *out, size_t n, const char *hex)
{
    if (strlen(hex) != 2 * n) return CND_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = s_nibble(hex[2 * i]), lo = s_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return CND_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
