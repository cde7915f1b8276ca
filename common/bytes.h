/*
 * bytes.h: a growable little-endian byte writer and a bounds-checked reader.
 *
 * File formats (.cnd models, .cndq artifacts, proofs, canonical audit encodings) are written
 * with cnd_buf_* and parsed with cnd_rd_*. The reader never reads past its end: once a read
 * would overrun, the reader is marked failed, every later read returns zeros, and the caller
 * checks `rd.err` once at a convenient point. That keeps parsers short without giving up on
 * checking every length.
 */
#ifndef CND_BYTES_H
#define CND_BYTES_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data; /* owned; NULL until the first write */
    size_t len;    /* bytes written */
    size_t cap;    /* bytes allocated */
    int err;       /* CND_ENOMEM once an allocation failed; later writes are ignored */
} cnd_buf_t;

void cnd_buf_init(cnd_buf_t *b);
void cnd_buf_free(cnd_buf_t *b);
/* Ensures room for n more bytes; returns 0 or CND_ENOMEM (also recorded in b->err). */
int cnd_buf_reserve(cnd_buf_t *b, size_t n);
void cnd_buf_put(cnd_buf_t *b, const void *p, size_t n);
void cnd_buf_u8(cnd_buf_t *b, uint8_t v);
void cnd_buf_u16(cnd_buf_t *b, uint16_t v);
void cnd_buf_u32(cnd_buf_t *b, uint32_t v);
void cnd_buf_u64(cnd_buf_t *b, uint64_t v);
void cnd_buf_f32(cnd_buf_t *b, float v);
/* u32 length then the bytes (no NUL). */
void cnd_buf_str(cnd_buf_t *b, const char *s);
void cnd_buf_blob(cnd_buf_t *b, const void *p, uint32_t n);
/* Overwrites 4 bytes at offset `at` (for lengths known only after writing). */
void cnd_buf_patch_u32(cnd_buf_t *b, size_t at, uint32_t v);

typedef struct {
    const uint8_t *p; /* start of the input */
    size_t len;       /* input length */
    size_t off;       /* next byte to read */
    int err;          /* nonzero once a read overran; sticky */
} cnd_rd_t;

void cnd_rd_init(cnd_rd_t *r, const void *p, size_t len);
/* Returns a pointer to the next n bytes and advances, or NULL (and sets err) if fewer remain. */
const uint8_t *cnd_rd_take(cnd_rd_t *r, size_t n);
uint8_t cnd_rd_u8(cnd_rd_t *r);
uint16_t cnd_rd_u16(cnd_rd_t *r);
uint32_t cnd_rd_u32(cnd_rd_t *r);
uint64_t cnd_rd_u64(cnd_rd_t *r);
float cnd_rd_f32(cnd_rd_t *r);
/* Reads a u32-length string of at most max_len bytes into a new NUL-terminated malloc'd
 * string; returns NULL (err set) on overrun, over-length or embedded NUL. */
char *cnd_rd_str(cnd_rd_t *r, uint32_t max_len);
size_t cnd_rd_left(const cnd_rd_t *r);

/* Little-endian loads and stores on raw memory. */
static inline uint32_t cnd_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void cnd_st_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t cnd_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

#endif
