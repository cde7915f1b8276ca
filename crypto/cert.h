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
