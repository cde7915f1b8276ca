/*
 * merkle.h: RFC 9162 (Certificate Transparency v2) Merkle tree hashing, inclusion and
 * consistency proofs, and their verification.
 *
 * Why it exists: the audit log (audit/audit_log.h) is a Merkle tree over its entries so
 * that a signed checkpoint (tree size + root) commits to every entry before it, an auditor can
 * check that one entry is in the log with ~log2(n) hashes, and that a later checkpoint extends an
 * earlier one without rewriting history. No Debian library implements RFC 9162 trees in C, so
 * the tree algorithms are written here by hand on top of OpenSSL's SHA-256; they follow the RFC's
 * section 2.1 definitions literally and are tested against the Certificate Transparency vectors
 * and a naive recursive reference for every tree size up to 64.
 *
 * Definitions (RFC 9162 2.1.1): leaf hash = SHA-256(0x00 || entry); interior node =
 * SHA-256(0x01 || left || right); the root of n > 1 leaves splits at k, the largest power of two
 * smaller than n; the root of the empty tree is SHA-256(""). An odd node is never duplicated.
 *
 * Usage: the audit log keeps a cnd_merkle_frontier_t (the roots of the perfect subtrees that
 * make up the current tree, one per set bit of the size) so that appending a leaf and computing
 * the new root costs O(log n) hashes. Proof generation takes the array of all leaf hashes up to
 * the tree size (callers read them from the log); verification needs only the proof.
 */
#ifndef CND_MERKLE_H
#define CND_MERKLE_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_MERKLE_HASH_BYTES 32
/* Upper bound on the number of hashes in any inclusion or consistency proof for tree sizes
 * below 2^63 (inclusion: at most 63; consistency: at most 64). */
#define CND_MERKLE_MAX_PROOF 66

typedef uint8_t cnd_merkle_hash_t[CND_MERKLE_HASH_BYTES];

/* SHA-256(0x00 || entry[0..len)). */
void cnd_merkle_leaf_hash(uint8_t out[CND_MERKLE_HASH_BYTES], const void *entry, size_t len);

/* SHA-256(0x01 || left || right). */
void cnd_merkle_node_hash(uint8_t out[CND_MERKLE_HASH_BYTES],
                          const uint8_t left[CND_MERKLE_HASH_BYTES],
                          const uint8_t right[CND_MERKLE_HASH_BYTES]);

/* The root of the empty tree, SHA-256 of the empty string. */
void cnd_merkle_empty_root(uint8_t out[CND_MERKLE_HASH_BYTES]);

/* Root of the tree whose leaf hashes are leaves[0..n); n may be 0. O(n) hashes, O(log n)
 * memory. */
void cnd_merkle_root(uint8_t out[CND_MERKLE_HASH_BYTES], const cnd_merkle_hash_t *leaves,
                     uint64_t n);

/* The right edge of a tree: the roots of its perfect subtrees, largest first. */
typedef struct {
    uint64_t size;              /* leaves appended so far */
    int n;                      /* subtrees on the stack = popcount(size) */
    cnd_merkle_hash_t node[64]; /* node[0] is the largest (leftmost) perfect subtree */
} cnd_merkle_frontier_t;

void cnd_merkle_frontier_init(cnd_merkle_frontier_t *f);
/* Appends one leaf hash. O(number of trailing one bits of size) hashes. */
void cnd_merkle_frontier_push(cnd_merkle_frontier_t *f, const uint8_t leaf[CND_MERKLE_HASH_BYTES]);
/* Root of the tree of f->size leaves (the empty root when size is 0). O(log n) hashes. */
void cnd_merkle_frontier_root(const cnd_merkle_frontier_t *f, uint8_t out[CND_MERKLE_HASH_BYTES]);

/* Inclusion proof (RFC 9162 2.1.3.1, PATH(index, D[tree_size])) of leaf `index` in the tree of
 * the first tree_size leaves. Writes up to CND_MERKLE_MAX_PROOF hashes to proof, their count to
 * *n_proof. Returns 0, or CND_EINVAL when index >= tree_size. */
CND_MUST_USE int cnd_merkle_inclusion_proof(cnd_merkle_hash_t *proof, size_t *n_proof,
                                            const cnd_merkle_hash_t *leaves, uint64_t tree_size,
                                            uint64_t index);

/* Consistency proof (RFC 9162 2.1.4.1, PROOF(old_size, D[new_size])) between the trees of the
 * first old_size and new_size leaves. Empty when old_size is 0 or equals new_size. Returns 0,
 * or CND_EINVAL when old_size > new_size. */
CND_MUST_USE int cnd_merkle_consistency_proof(cnd_merkle_hash_t *proof, size_t *n_proof,
                                              const cnd_merkle_hash_t *leaves, uint64_t new_size,
                                              uint64_t old_size);

/* Verifies an inclusion proof (RFC 9162 2.1.3.2). Returns 0 when leaf `index` with hash `leaf`
 * is in the tree of tree_size leaves with root `root`, else CND_ECRYPTO (no detail recorded:
 * callers say which entry and checkpoint failed). */
CND_MUST_USE int cnd_merkle_verify_inclusion(const uint8_t leaf[CND_MERKLE_HASH_BYTES],
                                             uint64_t index, uint64_t tree_size,
                                             const cnd_merkle_hash_t *proof, size_t n_proof,
                                             const uint8_t root[CND_MERKLE_HASH_BYTES]);

/* Verifies a consistency proof (RFC 9162 2.1.4.2): that the tree of new_size leaves with root
 * new_root extends the tree of old_size leaves with root old_root. Sizes 0 -> n and n -> n are
 * accepted with an empty proof (for n -> n the roots must be equal; for 0 -> n old_root must be
 * the empty root). Returns 0 or CND_ECRYPTO. */
CND_MUST_USE int cnd_merkle_verify_consistency(uint64_t old_size, uint64_t new_size,
                                               const uint8_t old_root[CND_MERKLE_HASH_BYTES],
                                               const uint8_t new_root[CND_MERKLE_HASH_BYTES],
                                               const cnd_merkle_hash_t *proof, size_t n_proof);

#endif
