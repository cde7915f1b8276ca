/*
 * secagg_internal.h: what the secure-aggregation client and server share and nothing outside
 * crypto/ (and its tests and benchmark) should call: the derivations that bind keys to a round
 * and a pair, message header coding, the threaded mask applier, and the benchmark's simulation
 * shortcut.
 *
 * Derivations (all inputs fixed-length, so concatenation is unambiguous):
 *   params digest  D = SHA-256(canonical params | "condenser-secagg-roster-v1" | n x (identity
 *                  pk | SHA-256 of the certificate DER)), the roster in index order: binds the
 *                  round, its parameters and who sits at which index
 *   advert signed  sign.h context "secagg-advert" over D | u32 u | identity pk | c_u pk | s_u pk
 *                  | commitment
 *   commitment     SHA-256("condenser-secagg-commit-v1" | D | u32 u | b_u)
 *   pair key       HKDF-SHA256(salt "condenser-secagg-v1", ikm X25519 shared secret,
 *                  info label | D | u32 min(u,v) | u32 max(u,v)), label "mask" or "share"
 *   share AEAD     XChaCha20-Poly1305-IETF, random 24-byte nonce, AD = "condenser-secagg-share-v1"
 *                  | D | u32 from | u32 to; plaintext u32 from | u32 to | b share | s_u share
 *   graph          permutation drawn from the mask PRG keyed with the graph seed
 *                  SHA-256("condenser-secagg-graph-v2" | D | the n ADVERT messages in index order)
 *   consistency    sign.h context "secagg-consistency" over D | u32 signer | SHA-256(
 *                  "condenser-secagg-survivors-v1" | D | u32 n | U2 bitmap | U3 bitmap)
 */
#ifndef CND_SECAGG_INTERNAL_H
#define CND_SECAGG_INTERNAL_H

#include "secagg.h"

#include <sodium.h>

#define S_SA_MAGIC         "CSA1"
#define S_SA_ADVERT_BODY   (32 * 4 + 64) /* id pk, c pk, s pk, commit, sig */
#define S_SA_ADVERT_BYTES  (CND_SECAGG_HDR_BYTES + S_SA_ADVERT_BODY)
#define S_SA_PT_BYTES      (4 + 4 + 32 + 32)         /* share plaintext */
#define S_SA_CT_BYTES      (24 + S_SA_PT_BYTES + 16) /* nonce | ciphertext | tag */
#define S_SA_SHARE_SEED    1                         /* share kinds in UNMASK */
#define S_SA_SHARE_MASKKEY 2

/* Digest D of filled params and their roster (p->n members in index order). */
void cnd_sa_params_digest(uint8_t d[32], const cnd_secagg_params_t *p,
                          const cnd_secagg_member_t *roster);
/* 0, or CND_EINVAL when two members of the roster share an identity. */
CND_MUST_USE int cnd_sa_roster_check(const cnd_secagg_member_t *roster, uint32_t n);
/* Graph seed from D and the n ADVERT messages (n x S_SA_ADVERT_BYTES, index order). */
void cnd_sa_graph_seed(uint8_t out[32], const uint8_t D[32], const uint8_t *adverts, uint32_t n);

/* Word width of the mask PRG for a ring of `bits` bits. */
static inline unsigned cnd_sa_word_bits(uint32_t bits)
{
    return bits <= 16 ? 16 : 32;
}

void cnd_sa_hdr_put(cnd_buf_t *b, uint8_t type, uint64_t round, uint32_t from, uint32_t to);

/* Parses the header and checks type, round and recipient against expectations. Returns 0 or
 * CND_EPROTO naming `who`. */
CND_MUST_USE int cnd_sa_hdr_expect(cnd_rd_t *r, cnd_secagg_hdr_t *h, uint8_t type, uint64_t round,
                                   uint32_t to, const char *who);

/* A parsed ADVERT message (pointers into the message). */
typedef struct {
    uint32_t from;
    const uint8_t *id_pk, *enc_pk, *mask_pk, *commit, *sig;
} cnd_sa_advert_t;

/* Parses an ADVERT for `round` (header type, recipient SERVER, exact length). A round mismatch is
 * reported as CND_ECRYPTO (keys replayed from another round); other defects as CND_EPROTO. */
CND_MUST_USE int cnd_sa_advert_parse(cnd_sa_advert_t *a, const uint8_t *msg, size_t len,
                                     uint64_t round, const char *who);

/* Checks that a's identity is the roster's at index a->from and that its signature covers D.
 * Returns 0, or CND_ECRYPTO with a detail naming the client. */
CND_MUST_USE int cnd_sa_advert_verify(const cnd_sa_advert_t *a, const uint8_t D[32],
                                      const cnd_secagg_member_t *roster, uint32_t n);

/* The bytes an advert signature covers. */
void cnd_sa_advert_signed(uint8_t out[32 + 4 + 4 * 32], const uint8_t D[32], uint32_t u,
                          const uint8_t id_pk[32], const uint8_t c_pk[32], const uint8_t s_pk[32],
                          const uint8_t commit[32]);

void cnd_sa_commit(uint8_t out[32], const uint8_t D[32], uint32_t u, const uint8_t seed[32]);

/* HKDF pair key from an X25519 shared secret computed with libsodium. Returns 0 or CND_ECRYPTO
 * when the peer key is a low-order point (all-zero shared secret). */
CND_MUST_USE int cnd_sa_pair_key(uint8_t out[32], const char *label, const uint8_t D[32],
                                 uint32_t u, uint32_t v, const uint8_t my_sk[32],
                                 const uint8_t peer_pk[32]);

/* Survivor sets travel as bitmaps of n bits, bit u of byte u/8 (LSB first), unused bits zero. */
static inline size_t cnd_sa_bitmap_bytes(uint32_t n)
{
    return ((size_t)n + 7) / 8;
}
static inline int cnd_sa_bit(const uint8_t *bm, uint32_t u)
{
    return bm[u / 8] >> (u % 8) & 1;
}

/* SHA-256("condenser-secagg-survivors-v1" | D | u32 n | U2 bitmap | U3 bitmap). */
void cnd_sa_survivors_digest(uint8_t out[32], const uint8_t D[32], uint32_t n, const uint8_t *u2,
                             const uint8_t *u3);

/* What a consistency signature covers (sign.h context "secagg-consistency"):
 * D | u32 signer | survivors digest. */
#define S_SA_CONSIST_SIGNED (32 + 4 + 32)
#define S_SA_SIG_ENTRY      (4 + 32 + 64) /* u32 index | identity pk | signature */
void cnd_sa_consist_signed(uint8_t out[S_SA_CONSIST_SIGNED], const uint8_t D[32], uint32_t signer,
                           const uint8_t sdigest[32]);

/* Associated data of a share ciphertext. */
void cnd_sa_share_ad(uint8_t out[25 + 32 + 8], const uint8_t D[32], uint32_t from, uint32_t to);
#define S_SA_AD_BYTES (25 + 32 + 8)

/* One mask to add to (negate = 0) or subtract from (negate = 1) a vector. */
typedef struct {
    uint8_t seed[32];
    uint8_t negate;
} cnd_sa_job_t;

/* Applies every job to acc[0..len) with `threads` workers splitting the vector into chunks
 * (each chunk sees every job, so the accumulator chunk stays in cache). Returns 0 or an error
 * from the generator. */
CND_MUST_USE int cnd_sa_apply_masks(uint32_t *acc, size_t len, unsigned word_bits,
                                    const cnd_sa_job_t *jobs, size_t n_jobs, unsigned threads);

/* Runs fn(ctx, i, worker) for i in [0, n) on up to `threads` workers (worker in [0, threads);
 * fewer when there would be under min_per_worker items per worker); stops early and returns the
 * first nonzero result. */
#define CND_SA_MAX_THREADS 64
typedef int (*cnd_sa_item_fn)(void *ctx, size_t i, unsigned worker);
CND_MUST_USE int cnd_sa_parallel(size_t n, unsigned threads, size_t min_per_worker,
                                 cnd_sa_item_fn fn, void *ctx);

/* BENCHMARK SIMULATION ONLY, NEVER IN A REAL ROUND: masks like cnd_secagg_client_mask but leaves
 * out the pairwise masks shared with the clients flagged in `skip` (n bytes). When `skip` flags
 * exactly the clients that will also deliver masked vectors, those masks would cancel in the
 * server's sum anyway, so the server's input and work are unchanged while simulating many
 * clients costs far less. The vector it produces hides nothing from the server. */
CND_MUST_USE int cnd_sa_client_mask_sim(cnd_secagg_client_t *c, cnd_buf_t *out,
                                        const uint8_t *shares_msg, size_t len, const uint32_t *x,
                                        const uint8_t *skip);

#endif
