/*
 * secagg.h: secure aggregation (Bonawitz et al. 2017 with the SecAgg+ neighbour graph of Bell et
 * al. 2020) as two state machines over byte buffers: the coordinator's server object learns the
 * sum of the clients' vectors modulo 2^b and nothing else about any one of them; it never holds
 * more than one vector-sized accumulator. No network here: the federation carries the messages
 * (opaque canonical bytes; cnd_secagg_peek reads their routing header).
 *
 * A round, with U1 >= U2 >= U3 the clients still present after each phase:
 *   0. The coordinator fixes cnd_secagg_params_t (round id, random round seed, n, degree,
 *      threshold t, vector length and ring width) and the roster (index -> identity key and
 *      certificate digest) and sends both to the n clients. D, the digest of both, is covered by
 *      every signature of the round.
 *   1. ADVERT (client -> server): fresh X25519 keys c_u (share encryption) and s_u (masks), and a
 *      commitment to a fresh 32-byte self-mask seed b_u, signed with u's identity key over D.
 *      The server checks the adverts and relays ALL n of them to every client (KEYS, server ->
 *      client). Only then is the neighbour graph fixed: its seed is a hash over D and the n
 *      adverts, so it depends on every site's fresh keys and the coordinator cannot choose it
 *      alone. Client u's neighbourhood N(u) holds u and `degree` others (a random ring of the
 *      seeded permutation; everyone when n is small); k = degree + 1 <= 255. A client refuses
 *      the round when an advert is not signed by the roster's identity at its index for this
 *      very D, when its own advert was altered, or when any participant's advert is missing.
 *   2. SHARES (client -> server): Shamir t-of-k shares of b_u and of s_u's secret key, for each
 *      neighbour encrypted with XChaCha20-Poly1305 under HKDF(X25519(c_u, c_v), round, pair) and
 *      bound to (round, u, v); the server routes them (SHARES_FOR) and cannot read them.
 *   3. MASKED (client -> server): y_u = x_u + PRG(b_u) + sum_{v in N(u) & U2, v > u} PRG(s_uv)
 *      - sum_{v in N(u) & U2, v < u} PRG(s_uv) mod 2^b, with s_uv = HKDF(X25519(s_u, s_v), round,
 *      pair), packed at b bits per element. The server adds it to its running sum and drops it.
 *   4. CONSISTENCY: the server sends every survivor the global sets U2 and U3 (bitmaps); each
 *      checks them against what it saw (it is in U3; exactly its neighbours in U2 sent it
 *      shares) and signs them with its identity key (CONSISTENCY_REQ / CONSISTENCY).
 *   5. UNMASK: the server tells each signer v which of its neighbours survived (alive) and
 *      which dropped after sharing (dropped), with min_survivors signatures of distinct
 *      clients of U3 (each checked against the roster's identity at its index) over the very
 *      sets v signed. v returns its share of b_u for
 *      alive u and of s_u's key for dropped u. It refuses a request that names one client in
 *      both lists, calls v itself dropped, differs from the sets v signed, or lacks enough valid
 *      signatures. One request per round.
 *   finish: the server rebuilds each alive b_u from t shares (checked against the commitment)
 *      and removes PRG(b_u); rebuilds each dropped s_u (checked against its public key) and
 *      removes the masks it shared with survivors. Fewer than t shares for anyone: the round
 *      fails with CND_ESTATE naming the client and the counts (more answers may still come).
 *
 * Why step 4: in a sparse graph a server could otherwise tell u's neighbours "u survived"
 * (getting b_u) while telling the neighbours of each of u's neighbours "v dropped" (getting every
 * s_v), and so strip all of u's masks: one client's update exposed without any client ever being
 * asked for both shares of one peer. Honest clients sign one survivor set each and min_survivors
 * is a strict majority of n, so only one set can gather enough signatures, and every honest
 * client answers for that same set. With a single consistent U3 the server can unmask only sums
 * over groups of survivors closed under "neighbour in U3", each of at least t clients.
 *
 * Threshold: t must be a strict majority of the neighbourhood (t > k/2), so that even a server
 * that lied about survivors could not collect t shares of both kinds for one client from honest
 * neighbours; with c corrupted neighbours it needs c >= 2t - k. See docs/threat-model.md.
 *
 * Errors: every function returns 0 or a CND_E* code with a detail naming the client index and
 * what was wrong. Bad input from a peer leaves the server's state unchanged (that message is
 * refused, the sender is treated as dropped). A client that detects misbehaviour (bad signature,
 * tampered share, an unmask request asking for both shares) aborts: it wipes its secrets and
 * refuses all later calls with CND_ESTATE.
 *
 * Threads: a client or server object is used by one thread at a time. The server's finish step
 * runs `threads` workers internally.
 */
#ifndef CND_SECAGG_H
#define CND_SECAGG_H

#include "bytes.h"
#include "identity.h"

#include <stddef.h>
#include <stdint.h>

#define CND_SECAGG_MAX_CLIENTS 65536
#define CND_SECAGG_MAX_K       255         /* neighbourhood size incl. the client (GF(2^8)) */
#define CND_SECAGG_SERVER      0xffffffffu /* "from"/"to" of the server in message headers */
#define CND_SECAGG_HDR_BYTES   21

/* One participant of a round, at its index: the identity key that signs for it and the SHA-256
 * of its X.509 certificate (DER). Both sides get the same ordered roster (RoundStart carries
 * the certificates) and it is part of the digest D every signature covers. */
typedef struct {
    uint8_t id_pk[32];
    uint8_t cert_sha256[32];
} cnd_secagg_member_t;

typedef struct {
    uint64_t round_id;      /* unique per round; also in every message header */
    uint8_t round_seed[32]; /* the server's fresh random value (makes D unique; the graph comes
                               from the adverts, not from this) */
    uint32_t n;             /* clients, indices 0..n-1; 2..CND_SECAGG_MAX_CLIENTS */
    uint32_t degree;        /* neighbours of each client besides itself: even, or n-1 for the
                               complete graph (larger values mean complete); 0 = default */
    uint32_t threshold;     /* t: floor(k/2)+1 <= t <= k with k = degree+1; 0 = floor(k/2)+1 */
    uint32_t min_survivors; /* fewest masked inputs the round may reveal the sum of, and the
                               signatures an unmask request needs: a strict majority of n and
                               at least threshold; 0 = max(threshold, floor(n/2) + 1) */
    uint32_t len;           /* ring elements per vector, >= 1 */
    uint32_t bits;          /* ring width b, 1..32 */
} cnd_secagg_params_t;

/* Default degree: 2 * ceil(log2 n), so k = 2 ceil(log2 n) + 1 (everyone when that covers n). */
uint32_t cnd_secagg_default_degree(uint32_t n);

/* Smallest even degree for which, with each client dropping independently with probability
 * `dropout` and t a strict majority, the chance that some client's secret cannot be rebuilt is
 * at most fail_prob (union bound over n clients, exact binomial tails). Returns n-1 (complete)
 * if nothing smaller suffices. */
uint32_t cnd_secagg_degree_for_dropout(uint32_t n, double dropout, double fail_prob);

/* Fills zero fields with their defaults and checks every field. Returns 0 or CND_EINVAL with a
 * detail naming the field. Both sides call this before creating their objects. */
CND_MUST_USE int cnd_secagg_params_fill(cnd_secagg_params_t *p);

/* Canonical bytes of the parameters ("CSP1" | round_id | seed | n | degree | threshold |
 * min_survivors | len | bits; 68 bytes) and their parser (strict; validates like _fill). */
CND_MUST_USE int cnd_secagg_params_encode(cnd_buf_t *out, const cnd_secagg_params_t *p);
CND_MUST_USE int cnd_secagg_params_decode(cnd_secagg_params_t *p, const uint8_t *data, size_t len);

/* Message types and the routing header every message starts with:
 *   "CSA1" | u8 type | u64 round_id | u32 from | u32 to     (21 bytes, little-endian)
 * Bodies (u32/u64 little-endian; k = neighbourhood size; every count is bounded by k or n and
 * checked against the exact remaining length before anything is read):
 *   ADVERT        identity pk 32 | c pk 32 | s pk 32 | seed commitment 32 | signature 64
 *   KEYS          u32 n | n x ADVERT message (213 bytes each, header included), index order
 *   SHARES        u32 count | count x (u32 to | nonce 24 | ciphertext 72 + tag 16), `to` ascending
 *   SHARES_FOR    u32 count | count x (u32 from | nonce 24 | ciphertext 72 + tag 16)
 *   MASKED        u32 len | u8 bits | ceil(len * bits / 8) bytes packed (fixedpoint.h)
 *   CONSIST_REQ   u32 n | U2 bitmap ceil(n/8) | U3 bitmap ceil(n/8)   (bit u of byte u/8)
 *   CONSISTENCY   signature 64
 *   UNMASK_REQ    u32 na | na x u32 alive | u32 nd | nd x u32 dropped (both ascending)
 *                 | u32 ns | ns x (u32 signer | identity pk 32 | signature 64), signer ascending
 *   UNMASK        u32 count | count x (u32 owner | u8 kind 1 = seed, 2 = mask key | share 32)
 * The federation carries these as opaque bytes (e.g. a protobuf `bytes` field); a peer's
 * authenticated index is passed to the server next to each message. */
typedef enum {
    CND_SECAGG_ADVERT = 1,      /* client -> server */
    CND_SECAGG_KEYS = 2,        /* server -> client: neighbours' adverts */
    CND_SECAGG_SHARES = 3,      /* client -> server: encrypted shares for neighbours */
    CND_SECAGG_SHARES_FOR = 4,  /* server -> client: shares addressed to it */
    CND_SECAGG_MASKED = 5,      /* client -> server: packed masked vector */
    CND_SECAGG_CONSIST_REQ = 6, /* server -> client: the global sets U2 and U3 */
    CND_SECAGG_CONSIST = 7,     /* client -> server: its signature over them */
    CND_SECAGG_UNMASK_REQ = 8,  /* server -> client: who survived, who dropped, signatures */
    CND_SECAGG_UNMASK = 9,      /* client -> server: the shares asked for */
} cnd_secagg_msg_type_t;

typedef struct {
    uint8_t type;      /* cnd_secagg_msg_type_t */
    uint64_t round_id; /* round the message belongs to */
    uint32_t from;     /* sender index or CND_SECAGG_SERVER */
    uint32_t to;       /* recipient index or CND_SECAGG_SERVER */
} cnd_secagg_hdr_t;

/* Reads the header of any message. Returns 0 or CND_EFORMAT. */
CND_MUST_USE int cnd_secagg_peek(cnd_secagg_hdr_t *h, const uint8_t *msg, size_t len);

/* --- neighbour graph ---------------------------------------------------------------------- */
typedef struct cnd_secagg_graph cnd_secagg_graph_t;

/* Builds the graph of filled params p. Returns 0, CND_EINVAL or CND_ENOMEM. */
/* Builds the graph of params p (filled here) from a 32-byte graph seed (in a round:
 * cnd_secagg_graph_seed). Returns 0, CND_EINVAL or CND_ENOMEM. */
CND_MUST_USE int cnd_secagg_graph_new(cnd_secagg_graph_t **out, const cnd_secagg_params_t *p,
                                      const uint8_t gseed[32]);
void cnd_secagg_graph_destroy(cnd_secagg_graph_t **g);
/* N(u) in ascending order, u included; *k receives its size. */
const uint32_t *cnd_secagg_graph_neighbours(const cnd_secagg_graph_t *g, uint32_t u, uint32_t *k);
/* Position of v in N(u) (0-based), or -1 when v is not a neighbour of u. */
int cnd_secagg_graph_pos(const cnd_secagg_graph_t *g, uint32_t u, uint32_t v);

/* --- client ------------------------------------------------------------------------------- */
typedef struct cnd_secagg_client cnd_secagg_client_t;

/* A client of one round. id is borrowed and must outlive the client; roster holds p->n members in
 * index order (copied); roster[index] must be id's key. Returns 0, CND_EINVAL (also: two members
 * share an identity, or this client is not at `index`) or CND_ENOMEM. */
CND_MUST_USE int cnd_secagg_client_new(cnd_secagg_client_t **out, const cnd_secagg_params_t *p,
                                       uint32_t index, const cnd_identity_t *id,
                                       const cnd_secagg_member_t *roster);
void cnd_secagg_client_destroy(cnd_secagg_client_t **c);

/* The round's digest D (params and roster) this client signs under: what a site records to
 * refuse being asked twice. */
const uint8_t *cnd_secagg_client_digest(const cnd_secagg_client_t *c);

/* Phase 1: appends the ADVERT message to out. */
CND_MUST_USE int cnd_secagg_client_advertise(cnd_secagg_client_t *c, cnd_buf_t *out);

/* Phase 2: checks the KEYS message (all n adverts, in index order, this client's own unchanged),
 * builds the neighbour graph from them and appends the SHARES message to out. CND_ECRYPTO: an
 * advert is not validly signed by the roster's identity at its index for this D (replayed,
 * forged, moved) or this client's own advert was altered; CND_EPROTO: malformed, not addressed
 * to this client, or an advert is missing. */
CND_MUST_USE int cnd_secagg_client_share_keys(cnd_secagg_client_t *c, cnd_buf_t *out,
                                              const uint8_t *keys_msg, size_t len);

/* Phase 3: decrypts the SHARES_FOR message, masks x[0..len) (elements below 2^bits) and appends
 * the MASKED message to out. CND_ECRYPTO: a share fails authentication; CND_ERANGE: x has an
 * element >= 2^bits; CND_ESTATE: fewer than t-1 neighbours shared. */
CND_MUST_USE int cnd_secagg_client_mask(cnd_secagg_client_t *c, cnd_buf_t *out,
                                        const uint8_t *shares_msg, size_t len, const uint32_t *x);

/* A survivor minimum of the caller's own (distributed DP: the noise of at least `floor` sites
 * in every sum revealed; proto/job_dp.h), checked now against the round's parameters and later
 * against the survivor set: CND_EPERM (the client stays usable, but the caller must not take
 * part) when min_survivors < floor, or when the graph is not complete and t < floor (the
 * server could unmask a closed group of t survivors; see "Why step 4" above). Afterwards the
 * consistency phase refuses (and aborts) a U3 of fewer than floor survivors, naming the reason,
 * before it checks min_survivors. floor 0: none. */
CND_MUST_USE int cnd_secagg_client_require(cnd_secagg_client_t *c, uint32_t floor);

/* Phase 4: checks the CONSIST_REQ message (this client in U3, U3 within U2, at least
 * min_survivors survivors, and its neighbours in U2 exactly those that sent it shares) and
 * appends the CONSISTENCY message (its signature over the sets). CND_EPROTO / CND_EPERM on a
 * set that contradicts what this client saw. */
CND_MUST_USE int cnd_secagg_client_consistency(cnd_secagg_client_t *c, cnd_buf_t *out,
                                               const uint8_t *req, size_t len);

/* Phase 5: answers the UNMASK_REQ message with the UNMASK message. CND_EPERM: the request asks for
 * both kinds of share of one client, or calls this client dropped; CND_EPROTO: malformed, or its
 * lists differ from the sets this client signed; CND_ECRYPTO: fewer than min_survivors valid
 * signatures of survivors (the roster's identity at each index) over those sets. */
CND_MUST_USE int cnd_secagg_client_unmask(cnd_secagg_client_t *c, cnd_buf_t *out,
                                          const uint8_t *req, size_t len);

/* --- server ------------------------------------------------------------------------------- */
typedef struct cnd_secagg_server cnd_secagg_server_t;

/* Per-client progress flags (cnd_secagg_server_status). */
#define CND_SECAGG_ST_ADVERTISED 0x1
#define CND_SECAGG_ST_SHARED     0x2
#define CND_SECAGG_ST_MASKED     0x4
#define CND_SECAGG_ST_SIGNED     0x8
#define CND_SECAGG_ST_UNMASKED   0x10

/* The coordinator's side of one round. roster: p->n members in index order (copied).
 * threads: workers for finish (0 or 1 = the calling thread only). */
CND_MUST_USE int cnd_secagg_server_new(cnd_secagg_server_t **out, const cnd_secagg_params_t *p,
                                       const cnd_secagg_member_t *roster, unsigned threads);
void cnd_secagg_server_destroy(cnd_secagg_server_t **s);

/* n bytes of CND_SECAGG_ST_* flags, one per client (valid while s lives). */
const uint8_t *cnd_secagg_server_status(const cnd_secagg_server_t *s);

/* Each add_* takes the sender's index as authenticated by the transport (CurveZMQ + ZAP) and
 * refuses a message whose header names another sender. A refused message changes nothing.
 * CND_ESTATE: wrong phase; CND_EPROTO: malformed, duplicate, or inconsistent with the round;
 * CND_ECRYPTO: bad signature or identity. */
CND_MUST_USE int cnd_secagg_server_add_advert(cnd_secagg_server_t *s, uint32_t from,
                                              const uint8_t *msg, size_t len);
/* Closes phase 1 and builds the neighbour graph from the adverts. CND_ESTATE when some client
 * did not advertise (the graph needs every participant's keys; the round failed). */
CND_MUST_USE int cnd_secagg_server_end_adverts(cnd_secagg_server_t *s);
/* KEYS message for client v (which advertised). */
CND_MUST_USE int cnd_secagg_server_keys_msg(cnd_secagg_server_t *s, cnd_buf_t *out, uint32_t v);

CND_MUST_USE int cnd_secagg_server_add_shares(cnd_secagg_server_t *s, uint32_t from,
                                              const uint8_t *msg, size_t len);
CND_MUST_USE int cnd_secagg_server_end_shares(cnd_secagg_server_t *s);
CND_MUST_USE int cnd_secagg_server_shares_msg(cnd_secagg_server_t *s, cnd_buf_t *out, uint32_t v);

/* Adds the masked vector to the running sum (streaming; the message may be freed afterwards). */
CND_MUST_USE int cnd_secagg_server_add_masked(cnd_secagg_server_t *s, uint32_t from,
                                              const uint8_t *msg, size_t len);
CND_MUST_USE int cnd_secagg_server_end_masked(cnd_secagg_server_t *s);
CND_MUST_USE int cnd_secagg_server_consistency_msg(cnd_secagg_server_t *s, cnd_buf_t *out,
                                                   uint32_t v);

CND_MUST_USE int cnd_secagg_server_add_consistency(cnd_secagg_server_t *s, uint32_t from,
                                                   const uint8_t *msg, size_t len);
/* Closes phase 4. CND_ESTATE when fewer than min_survivors signed. */
CND_MUST_USE int cnd_secagg_server_end_consistency(cnd_secagg_server_t *s);
CND_MUST_USE int cnd_secagg_server_unmask_msg(cnd_secagg_server_t *s, cnd_buf_t *out, uint32_t v);

CND_MUST_USE int cnd_secagg_server_add_unmask(cnd_secagg_server_t *s, uint32_t from,
                                              const uint8_t *msg, size_t len);

/* Rebuilds and removes the masks and writes the sum of the survivors' vectors modulo 2^bits to
 * sum[0..len). CND_ESTATE: some secret has fewer than t shares (the detail names the client);
 * CND_ECRYPTO: rebuilt secrets do not match their commitment / public key (a bad share). */
CND_MUST_USE int cnd_secagg_server_finish(cnd_secagg_server_t *s, uint32_t *sum);

/* Time spent in the last finish (seconds), split into rebuilding secrets + key agreement and
 * mask expansion (for benchmarks). */
void cnd_secagg_server_finish_times(const cnd_secagg_server_t *s, double *keys_s, double *masks_s);

#endif
