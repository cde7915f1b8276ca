/*
 * digest.h: SHA-256 through OpenSSL's EVP interface, and hex helpers.
 *
 * Every content digest in Condenser (model files, artifacts, chunks, audit entries, egress log)
 * is SHA-256. The incremental context lets large files be hashed while they are written.
 */
#ifndef CND_DIGEST_H
#define CND_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define CND_SHA256_BYTES 32
#define CND_SHA256_HEX   (2 * CND_SHA256_BYTES + 1)

typedef struct cnd_sha256 cnd_sha256_t;

/* One-shot digest of data[0..len). Never fails for valid arguments (OpenSSL aborts on OOM of
 * its tiny context, which we treat as fatal). */
void cnd_sha256(uint8_t out[CND_SHA256_BYTES], const void *data, size_t len);

/* Incremental use: _new returns NULL on allocation failure; _final writes the digest and
 * leaves the context ready for reuse; _destroy accepts NULL and nulls the pointer. */
cnd_sha256_t *cnd_sha256_new(void);
void cnd_sha256_update(cnd_sha256_t *ctx, const void *data, size_t len);
void cnd_sha256_final(cnd_sha256_t *ctx, uint8_t out[CND_SHA256_BYTES]);
void cnd_sha256_destroy(cnd_sha256_t **ctx);

/* Lower-case hex of n bytes into out (2n+1 bytes with the NUL). Returns out. */
char *cnd_hex(char *out, const uint8_t *bytes, size_t n);

/* Parses exactly 2n hex characters into n bytes; returns 0 or CND_EINVAL. */
int cnd_unhex(uint8_t *out, size_t n, const char *hex);

#endif
