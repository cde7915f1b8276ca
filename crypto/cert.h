/*
 * cert.h: node certificates as the federation moves them. The CA (crypto/ca.h) writes and
 * verifies PEM; the wire protocol carries DER (Hello.certificate, RoundStart.neighbours). These
 * helpers convert between the two with OpenSSL and check a DER certificate against the CA for a
 * given name and role, so the coordinator (enrollment, Hello) and the agent (its neighbours in a
 * round) apply the same rule: chain to the federation CA, validity period, not revoked (the CRL
 * is re-read every time), the role asked for, and CN equal to the node's name.
 */
#ifndef CND_CERT_H
#define CND_CERT_H

#include "ca.h"
#include "error.h"

#include <stddef.h>
#include <stdint.h>

/* Expiry warnings: `site list` and the agent's log warn this many days before a node
 * certificate expires (certificates live 30 days: the second half of their life is the renewal
 * window), and the agent warns this many days before its revocation list needs re-signing (a
 * CRL lives 30 days and is re-signed by every `ca issue`, `ca revoke` and `ca crl`). */
#define CND_CERT_WARN_DAYS 14
#define CND_CRL_WARN_DAYS  7

/* Whole days from now until t, rounded down (negative once t has passed: -1 in the first day
 * after it). */
static inline int64_t cnd_cert_days_left(int64_t t, int64_t now)
{
    int64_t d = t - now;
    return d >= 0 ? d / 86400 : -((-d + 86399) / 86400);
}

/* Whether certificate a supersedes b (both from the federation CA): it ends later, or at the
 * same second with a higher serial. The CA numbers leaves 1, 2, 3, ... as it issues them, so of
 * two certificates issued within one second (their not_after equal) the higher serial is the
 * later one. */
static inline int cnd_cert_newer(const cnd_cert_info_t *a, const cnd_cert_info_t *b)
{
    return a->not_after > b->not_after || (a->not_after == b->not_after && a->serial > b->serial);
}

/* PEM or DER in, DER out (*der malloc'd). Returns 0 or CND_EFORMAT naming `what`. */
CND_MUST_USE int cnd_cert_to_der(uint8_t **der, size_t *len, const uint8_t *in, size_t in_len,
                                 const char *what);

/* Reads a certificate file (PEM or DER) as DER. */
CND_MUST_USE int cnd_cert_read_der(uint8_t **der, size_t *len, const char *path);

/* Verifies a DER certificate with the CA certificate and CRL files at time now: role (NULL =
 * any) and, when name is not NULL, CN == name. Fills info. Returns 0 or the crypto/ca.h code with
 * a detail naming the node and the reason. */
CND_MUST_USE int cnd_cert_check(cnd_cert_info_t *info, const char *ca_cert, const char *ca_crl,
                                const uint8_t *der, size_t len, const char *role, const char *name,
                                int64_t now);

/* Same with trust already loaded (cnd_ca_trust_load), for many certificates at once. */
CND_MUST_USE int cnd_cert_check_trust(cnd_cert_info_t *info, const cnd_ca_trust_t *t,
                                      const uint8_t *der, size_t len, const char *role,
                                      const char *name, int64_t now);

#endif
