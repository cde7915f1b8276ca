/*
 * bytes.c: see bytes.h.
 */
#include "bytes.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

void cnd_buf_init(cnd_buf_t *b)
{
    memset(b, 0, sizeof *b);
}

void cnd_buf_free(cnd_buf_t *b)
{
    if (!b) return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

int cnd_buf_reserve(cnd_buf_t *b, size_t n)
{
    if (b->err) return b->err;
    if (n <= b->cap - b->len) return 0;
    if (n > SIZE_MAX / 2 - b->len) return b->err = CND_ENOMEM;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) return b->err = CND_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

void cnd_buf_put(cnd_buf_t *b, const void *p, size_t n)
{
    if (n == 0 || cnd_buf_reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void cnd_buf_u8(cnd_buf_t *b, uint8_t v)
{
    cnd_buf_put(b, &v, 1);
}

void cnd_buf_u16(cnd_buf_t *b, uint16_t v)
{
    uint8_t t[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    cnd_buf_put(b, t, 2);
}

void cnd_buf_u32(cnd_buf_t *b, uint32_t v)
{
    uint8_t t[4];
    cnd_st_le32(t, v);
    cnd_buf_put(b, t, 4);
}

void cnd_buf_u64(cnd_buf_t *b, uint64_t v)
{
    cnd_buf_u32(b, (uint32_t)v);
    cnd_buf_u32(b, (uint32_t)(v >> 32));
}

void cnd_buf_f32(cnd_buf_t *b, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    cnd_buf_u32(b, u);
}

void cnd_buf_str(cnd_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    cnd_buf_u32(b, (uint32_t)n);
    cnd_buf_put(b, s, n);
}

void cnd_buf_blob(cnd_buf_t *b, const void *p, uint32_t n)
{
    cnd_buf_u32(b, n);
    cnd_buf_put(b, p, n);
}

void cnd_buf_patch_u32(cnd_buf_t *b, size_t at, uint32_t v)
{
    if (b->err || at > b->len || b->len - at < 4) return;
    cnd_st_le32(b->data + at, v);
}

void cnd_rd_init(cnd_rd_t *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->off = 0;
    r->err = 0;
}

const uint8_t *cnd_rd_take(cnd_rd_t *r, size_t n)
{
    if (r->err || n > r->len - r->off) {
        r->err = CND_EFORMAT;
        return NULL;
    }
    const uint8_t *q = r->p + r->off;
    r->off += n;
    return q;
}

uint8_t cnd_rd_u8(cnd_rd_t *r)
{
    const uint8_t *q = cnd_rd_take(r, 1);
    return q ? q[0] : 0;
}

uint16_t cnd_rd_u16(cnd_rd_t *r)
{
    const uint8_t *q = cnd_rd_take(r, 2);
    return q ? (uint16_t)(q[0] | q[1] << 8) : 0;
}

uint32_t cnd_rd_u32(cnd_rd_t *r)
{
    const uint8_t *q = cnd_rd_take(r, 4);
    return q ? cnd_le32(q) : 0;
}

uint64_t cnd_rd_u64(cnd_rd_t *r)
{
    uint64_t lo = cnd_rd_u32(r);
    uint64_t hi = cnd_rd_u32(r);
    return lo | hi << 32;
}

float cnd_rd_f32(cnd_rd_t *r)
{
    uint32_t u = cnd_rd_u32(r);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

char *cnd_rd_str(cnd_rd_t *r, uint32_t max_len)
{
    uint32_t n = cnd_rd_u32(r);
    if (r->err) return NULL;
    if (n > max_len) {
        r->err = CND_EFORMAT;
        return NULL;
    }
    const uint8_t *q = cnd_rd_take(r, n);
    if (!q) return NULL;
    if (memchr(q, 0, n)) {
        r->err = CND_EFORMAT;
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (!s) {
        r->err = CND_ENOMEM;
        return NULL;
    }
    memcpy(s, q, n);
    s[n] = 0;
    return s;
}

size_t cnd_rd_left(const cnd_rd_t *r)
{
    return r->err ? 0 : r->len - r->off;
}
