/*
 * chunk.c: splitting objects into chunks and reassembling them (see chunk.h for the rules).
 *
 * The assembler holds one buffer of exactly the announced size and one bit per chunk. A
 * duplicate is compared byte for byte with the copy already held (no per-chunk digest table,
 * which for 2 GiB objects in 1 KiB chunks would cost 64 MiB), so the outcome of any arrival
 * order is the same: the first valid copy of each chunk wins.
 */
#include "chunk.h"

#include "digest.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct cnd_assembler {
    Condenser__ObjectKind kind;
    uint8_t digest[CND_PROTO_DIGEST_BYTES]; /* announced SHA-256 of the whole object */
    uint64_t total;                         /* announced size, bytes */
    uint32_t chunk_size;                    /* bytes per chunk, except the last */
    uint32_t count;                         /* chunks in the object */
    uint32_t received;                      /* chunks held */
    uint32_t next_missing;                  /* lowest index not held; == count when complete */
    uint8_t *data;                          /* total bytes; NULL after finish */
    uint8_t *have;                          /* bit i: chunk i held */
};

static void s_reject(cnd_proto_reject_t *rej, Condenser__ErrorCode code)
{
    if (rej) rej->code = code;
}

int cnd_chunk_plan(Condenser__ObjectInfo *info, uint8_t digest[CND_PROTO_DIGEST_BYTES],
                   const void *data, uint64_t len, uint32_t chunk_size)
{
    if (len == 0 || len > CND_PROTO_OBJECT_MAX)
        return cnd_errf(CND_EINVAL, "object of %llu bytes cannot be chunked (1..%llu)",
                        (unsigned long long)len, (unsigned long long)CND_PROTO_OBJECT_MAX);
    if (chunk_size < CND_PROTO_CHUNK_MIN || chunk_size > CND_PROTO_CHUNK_MAX)
        return cnd_errf(CND_EINVAL, "chunk size %u outside %u..%u", chunk_size, CND_PROTO_CHUNK_MIN,
                        CND_PROTO_CHUNK_MAX);
    condenser__object_info__init(info);
    cnd_sha256(digest, data, (size_t)len);
    info->digest = cnd_proto_bytes(digest, CND_PROTO_DIGEST_BYTES);
    info->total_size = len;
    info->chunk_size = chunk_size;
    info->chunk_count = (uint32_t)((len + chunk_size - 1) / chunk_size);
    return 0;
}

int cnd_chunk_piece(Condenser__Chunk *c, uint8_t sha[CND_PROTO_DIGEST_BYTES],
                    Condenser__ObjectKind kind, const Condenser__ObjectInfo *info, const void *data,
                    uint32_t index)
{
    if (index >= info->chunk_count)
        return cnd_errf(CND_EINVAL, "chunk %u of an object of %u chunks", index, info->chunk_count);
    uint64_t off = (uint64_t)index * info->chunk_size;
    uint64_t n =
        info->total_size - off < info->chunk_size ? info->total_size - off : info->chunk_size;
    condenser__chunk__init(c);
    c->kind = kind;
    c->object_digest = info->digest;
    c->index = index;
    c->offset = off;
    c->data = cnd_proto_bytes((const uint8_t *)data + off, (size_t)n);
    cnd_sha256(sha, c->data.data, c->data.len);
    c->sha256 = cnd_proto_bytes(sha, CND_PROTO_DIGEST_BYTES);
    return 0;
}

int cnd_chunk_verify(cnd_proto_reject_t *rej, const Condenser__Chunk *c)
{
    uint8_t h[CND_PROTO_DIGEST_BYTES];
    if (c->sha256.len != CND_PROTO_DIGEST_BYTES) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_BAD_FIELD);
        return cnd_errf(CND_EPROTO, "chunk %u: sha256 is %zu bytes, expected 32", c->index,
                        c->sha256.len);
    }
    cnd_sha256(h, c->data.data, c->data.len);
    if (sodium_memcmp(h, c->sha256.data, sizeof h) != 0) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_DIGEST_MISMATCH);
        return cnd_errf(CND_ECORRUPT, "chunk %u: bytes do not match the chunk's sha256", c->index);
    }
    return 0;
}

int cnd_assembler_new(cnd_assembler_t **out, cnd_proto_reject_t *rej, Condenser__ObjectKind kind,
                      const Condenser__ObjectInfo *info, uint64_t max_total)
{
    *out = NULL;
    int rc = cnd_proto_validate_object_info(rej, "object", info);
    if (rc) return rc;
    if (info->total_size > max_total) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_TOO_LARGE);
        return cnd_errf(CND_ERANGE, "object of %llu bytes is larger than the %llu accepted here",
                        (unsigned long long)info->total_size, (unsigned long long)max_total);
    }
    if (info->total_size > SIZE_MAX) return cnd_errf(CND_ERANGE, "object too large for memory");
    cnd_assembler_t *a = calloc(1, sizeof *a);
    if (!a) goto oom;
    a->kind = kind;
    memcpy(a->digest, info->digest.data, sizeof a->digest);
    a->total = info->total_size;
    a->chunk_size = info->chunk_size;
    a->count = info->chunk_count;
    a->data = malloc((size_t)a->total);
    a->have = calloc(((size_t)a->count + 7) / 8, 1);
    if (!a->data || !a->have) goto oom;
    *out = a;
    return 0;
oom:
    cnd_assembler_destroy(&a);
    s_reject(rej, CONDENSER__ERROR_CODE__ERR_INTERNAL);
    return cnd_errf(CND_ENOMEM, "no memory for a %llu-byte object",
                    (unsigned long long)info->total_size);
}

static int s_has(const cnd_assembler_t *a, uint32_t i)
{
    return (a->have[i >> 3] >> (i & 7)) & 1;
}

int cnd_assembler_add(cnd_assembler_t *a, cnd_proto_reject_t *rej, const Condenser__Chunk *c)
{
    if (!a->data) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_BAD_FIELD);
        return cnd_errf(CND_ESTATE, "chunk %u: object already finished", c->index);
    }
    if (c->kind != a->kind) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_BAD_FIELD);
        return cnd_errf(CND_EPROTO, "chunk %u: kind %d, expected %d", c->index, (int)c->kind,
                        (int)a->kind);
    }
    if (c->object_digest.len != CND_PROTO_DIGEST_BYTES ||
        sodium_memcmp(c->object_digest.data, a->digest, CND_PROTO_DIGEST_BYTES) != 0) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_BAD_FIELD);
        return cnd_errf(CND_EPROTO, "chunk %u: belongs to another object", c->index);
    }
    if (c->index >= a->count) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_TOO_LARGE);
        return cnd_errf(CND_EPROTO, "chunk %u: beyond the announced %u chunks", c->index, a->count);
    }
    uint64_t off = (uint64_t)c->index * a->chunk_size;
    uint64_t want = a->total - off < a->chunk_size ? a->total - off : a->chunk_size;
    if (c->offset != off) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_BAD_FIELD);
        return cnd_errf(CND_EPROTO, "chunk %u: offset %llu, expected %llu", c->index,
                        (unsigned long long)c->offset, (unsigned long long)off);
    }
    if (c->data.len != want) {
        s_reject(rej, c->data.len > want ? CONDENSER__ERROR_CODE__ERR_TOO_LARGE
                                         : CONDENSER__ERROR_CODE__ERR_BAD_FIELD);
        return cnd_errf(CND_EPROTO, "chunk %u: %zu bytes, expected %llu", c->index, c->data.len,
                        (unsigned long long)want);
    }
    int rc = cnd_chunk_verify(rej, c);
    if (rc) return rc;
    if (s_has(a, c->index)) {
        if (memcmp(a->data + off, c->data.data, c->data.len) == 0) {
            s_reject(rej, CONDENSER__ERROR_CODE__ERR_REPLAY);
            return cnd_errf(CND_EEXIST, "chunk %u: duplicate, already held", c->index);
        }
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_BAD_FIELD);
        return cnd_errf(CND_EPROTO, "chunk %u: conflicts with the copy already held", c->index);
    }
    memcpy(a->data + off, c->data.data, c->data.len);
    a->have[c->index >> 3] |= (uint8_t)(1u << (c->index & 7));
    a->received++;
    while (a->next_missing < a->count && s_has(a, a->next_missing)) a->next_missing++;
    return 0;
}

uint32_t cnd_assembler_received(const cnd_assembler_t *a)
{
    return a->received;
}

uint32_t cnd_assembler_count(const cnd_assembler_t *a)
{
    return a->count;
}

uint32_t cnd_assembler_next_missing(const cnd_assembler_t *a)
{
    return a->next_missing;
}

uint64_t cnd_assembler_prefix_bytes(const cnd_assembler_t *a)
{
    uint64_t b = (uint64_t)a->next_missing * a->chunk_size;
    return b > a->total ? a->total : b;
}

int cnd_assembler_finish(cnd_assembler_t *a, cnd_proto_reject_t *rej, uint8_t **data, uint64_t *len)
{
    *data = NULL;
    *len = 0;
    if (!a->data) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_INTERNAL);
        return cnd_errf(CND_ESTATE, "object already finished");
    }
    if (a->received != a->count) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_BAD_FIELD);
        return cnd_errf(CND_ESTATE, "object incomplete: %u of %u chunks, chunk %u missing",
                        a->received, a->count, a->next_missing);
    }
    uint8_t h[CND_PROTO_DIGEST_BYTES];
    cnd_sha256(h, a->data, (size_t)a->total);
    if (sodium_memcmp(h, a->digest, sizeof h) != 0) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_DIGEST_MISMATCH);
        return cnd_errf(CND_ECORRUPT, "object of %llu bytes does not match its announced SHA-256",
                        (unsigned long long)a->total);
    }
    *data = a->data;
    *len = a->total;
    a->data = NULL;
    return 0;
}

void cnd_assembler_destroy(cnd_assembler_t **pa)
{
    if (!pa || !*pa) return;
    cnd_assembler_t *a = *pa;
    free(a->data);
    free(a->have);
    free(a);
    *pa = NULL;
}
