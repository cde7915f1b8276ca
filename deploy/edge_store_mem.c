/*
 * edge_store_mem.c: the in-memory edge store of the fleet simulator (edge_store.h).
 *
 * A simulated device's slots and downloaded chunks are references into a pool of blobs keyed by
 * SHA-256 (a chained hash table with reference counts). On insertion a blob with the same key is
 * compared byte for byte and reused only when identical, so sharing never changes what a device
 * reads back; a different blob under a colliding key simply gets its own entry. The state record
 * is small and private to each device. Writes are trivially atomic (one pointer swap).
 */
#include "edge_store.h"

#include <stdlib.h>
#include <string.h>

#define S_BUCKETS 1024

typedef struct s_blob {
    struct s_blob *next;
    uint8_t key[32];
    uint8_t *data;
    size_t len;
    uint64_t refs;
} s_blob_t;

struct cnd_edge_pool {
    s_blob_t *b[S_BUCKETS];
    uint64_t bytes;   /* distinct blob bytes */
    uint64_t private; /* state records and chunk tables of all stores */
};

int cnd_edge_pool_new(cnd_edge_pool_t **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : cnd_errf(CND_ENOMEM, "edge pool: out of memory");
}

void cnd_edge_pool_destroy(cnd_edge_pool_t **pp)
{
    if (!pp || !*pp) return;
    for (int i = 0; i < S_BUCKETS; i++) {
        s_blob_t *b = (*pp)->b[i];
        while (b) {
            s_blob_t *n = b->next;
            free(b->data);
            free(b);
            b = n;
        }
    }
    free(*pp);
    *pp = NULL;
}

uint64_t cnd_edge_pool_bytes(const cnd_edge_pool_t *p)
{
    return p ? p->bytes + p->private : 0;
}

static s_blob_t *s_intern(cnd_edge_pool_t *p, const uint8_t key[32], const uint8_t *data,
                          size_t len)
{
    unsigned h = ((unsigned)key[0] | (unsigned)key[1] << 8) % S_BUCKETS;
    for (s_blob_t *b = p->b[h]; b; b = b->next)
        if (b->len == len && memcmp(b->key, key, 32) == 0 && memcmp(b->data, data, len) == 0) {
            b->refs++;
            return b;
        }
    s_blob_t *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->data = malloc(len ? len : 1);
    if (!b->data) {
        free(b);
        return NULL;
    }
    memcpy(b->data, data, len);
    memcpy(b->key, key, 32);
    b->len = len;
    b->refs = 1;
    b->next = p->b[h];
    p->b[h] = b;
    p->bytes += len;
    return b;
}

static void s_release(cnd_edge_pool_t *p, s_blob_t *x)
{
    if (!x || --x->refs) return;
    unsigned h = ((unsigned)x->key[0] | (unsigned)x->key[1] << 8) % S_BUCKETS;
    for (s_blob_t **pb = &p->b[h]; *pb; pb = &(*pb)->next)
        if (*pb == x) {
            *pb = x->next;
            break;
        }
    p->bytes -= x->len;
    free(x->data);
    free(x);
}

typedef struct {
    uint64_t off;
    s_blob_t *blob;
} s_piece_t;

typedef struct {
    cnd_edge_pool_t *pool;
    uint8_t *state;
    size_t state_len;
    s_blob_t *slot[2];
    int part_open;
    uint64_t part_size;
    s_piece_t *pieces;
    size_t n_pieces, cap_pieces;
} s_mem_t;

static int s_state_load(void *ctx, uint8_t **data, size_t *len)
{
    s_mem_t *m = ctx;
    if (!m->state) return CND_ENOTFOUND;
    *data = malloc(m->state_len ? m->state_len : 1);
    if (!*data) return cnd_errf(CND_ENOMEM, "edge store: out of memory");
    memcpy(*data, m->state, m->state_len);
    *len = m->state_len;
    return 0;
}

static int s_state_save(void *ctx, const uint8_t *data, size_t len)
{
    s_mem_t *m = ctx;
    uint8_t *n = malloc(len ? len : 1);
    if (!n) return cnd_errf(CND_ENOMEM, "edge store: out of memory");
    memcpy(n, data, len);
    m->pool->private -= m->state_len;
    free(m->state);
    m->state = n;
    m->state_len = len;
    m->pool->private += len;
    return 0;
}

static int s_slot_write(void *ctx, int slot, const uint8_t *data, size_t len,
                        const uint8_t digest[32])
{
    s_mem_t *m = ctx;
    s_blob_t *b = s_intern(m->pool, digest, data, len);
    if (!b) return cnd_errf(CND_ENOMEM, "edge store: out of memory");
    s_release(m->pool, m->slot[slot & 1]);
    m->slot[slot & 1] = b;
    return 0;
}

static int s_slot_read(void *ctx, int slot, uint8_t **data, size_t *len)
{
    s_mem_t *m = ctx;
    s_blob_t *b = m->slot[slot & 1];
    if (!b) return CND_ENOTFOUND;
    *data = malloc(b->len ? b->len : 1);
    if (!*data) return cnd_errf(CND_ENOMEM, "edge store: out of memory");
    memcpy(*data, b->data, b->len);
    *len = b->len;
    return 0;
}

static void s_part_discard(void *ctx)
{
    s_mem_t *m = ctx;
    for (size_t i = 0; i < m->n_pieces; i++) s_release(m->pool, m->pieces[i].blob);
    m->pool->private -= m->cap_pieces * sizeof *m->pieces;
    free(m->pieces);
    m->pieces = NULL;
    m->n_pieces = m->cap_pieces = 0;
    m->part_open = 0;
    m->part_size = 0;
}

static int s_part_begin(void *ctx, uint64_t size)
{
    s_mem_t *m = ctx;
    s_part_discard(m);
    m->part_open = 1;
    m->part_size = size;
    return 0;
}

static int s_part_write(void *ctx, uint64_t off, const uint8_t *data, size_t len,
                        const uint8_t sha[32])
{
    s_mem_t *m = ctx;
    if (!m->part_open || off > m->part_size || len > m->part_size - off)
        return cnd_errf(CND_ERANGE, "edge store: chunk at %llu (+%zu) outside the reserved size",
                        (unsigned long long)off, len);
    for (size_t i = 0; i < m->n_pieces; i++)
        if (m->pieces[i].off == off) {
            s_blob_t *b = s_intern(m->pool, sha, data, len);
            if (!b) return cnd_errf(CND_ENOMEM, "edge store: out of memory");
            s_release(m->pool, m->pieces[i].blob);
            m->pieces[i].blob = b;
            return 0;
        }
    if (m->n_pieces == m->cap_pieces) {
        size_t nc = m->cap_pieces ? 2 * m->cap_pieces : 4;
        s_piece_t *np = realloc(m->pieces, nc * sizeof *np);
        if (!np) return cnd_errf(CND_ENOMEM, "edge store: out of memory");
        m->pool->private += (nc - m->cap_pieces) * sizeof *np;
        m->pieces = np;
        m->cap_pieces = nc;
    }
    s_blob_t *b = s_intern(m->pool, sha, data, len);
    if (!b) return cnd_errf(CND_ENOMEM, "edge store: out of memory");
    m->pieces[m->n_pieces].off = off;
    m->pieces[m->n_pieces].blob = b;
    m->n_pieces++;
    return 0;
}

static int s_part_read(void *ctx, uint8_t **data, size_t *len)
{
    s_mem_t *m = ctx;
    if (!m->part_open) return CND_ENOTFOUND;
    uint8_t *p = calloc(1, m->part_size ? (size_t)m->part_size : 1);
    if (!p) return cnd_errf(CND_ENOMEM, "edge store: out of memory");
    for (size_t i = 0; i < m->n_pieces; i++)
        memcpy(p + m->pieces[i].off, m->pieces[i].blob->data, m->pieces[i].blob->len);
    *data = p;
    *len = (size_t)m->part_size;
    return 0;
}

static const cnd_edge_store_ops_t s_ops = {s_state_load, s_state_save,  s_slot_write,
                                           s_slot_read,  s_part_begin,  s_part_write,
                                           s_part_read,  s_part_discard};

int cnd_edge_store_mem(cnd_edge_store_t *out, cnd_edge_pool_t *pool)
{
    memset(out, 0, sizeof *out);
    s_mem_t *m = calloc(1, sizeof *m);
    if (!m) return cnd_errf(CND_ENOMEM, "edge store: out of memory");
    m->pool = pool;
    pool->private += sizeof *m;
    out->ops = &s_ops;
    out->ctx = m;
    return 0;
}

void cnd_edge_store_mem_free(cnd_edge_store_t *s)
{
    if (!s || !s->ctx) return;
    s_mem_t *m = s->ctx;
    s_part_discard(m);
    s_release(m->pool, m->slot[0]);
    s_release(m->pool, m->slot[1]);
    m->pool->private -= m->state_len + sizeof *m;
    free(m->state);
    free(m);
    s->ctx = NULL;
    s->ops = NULL;
}
