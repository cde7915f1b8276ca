/*
 * ca.h: the federation's certificate authority (OpenSSL 3, X.509 with Ed25519 keys).
 *
 * The CA binds a node name and role to the node's Ed25519 identity key (crypto/identity.h). The
 * coordinator admits a CurveZMQ peer only when its key belongs to a certificate that verifies
 * here; an auditor can check who held which role when.
 *
 * Certificates: X.509 v3, signed by the CA's own Ed25519 key. Subject CN = node name, OU = role
 * (site | device | coordinator | auditor), O = federation name. Leaf certificates carry
 * basicConstraints CA:FALSE and keyUsage digitalSignature, both critical; notBefore is five
 * minutes before issue (clock skew), notAfter `days` later (30 by default: short-lived, renewed by
 * issuing again under a new serial; nothing needs restarting because verifiers read the files
 * they are given on each load). Revocation by serial lands in a CRL (v2) signed by the CA, valid
 * for CND_CA_CRL_DAYS and re-signed on every init, issue, revoke and `condenser ca crl`.
 *
 * CA directory (all files written atomically; issue and revoke hold an exclusive flock on
 * DIR/lock so concurrent commands serialize):
 *   ca.key     CA private key, PEM PKCS#8, mode 0600 (refused on load when group/other can read)
 *   ca.crt     self-signed CA certificate, PEM
 *   serial     next serial number, decimal text
 *   index      one line per certificate issued, tab-separated:
 *              serial  V|R  not_before  not_after  revoked_at(0)  name  role  pubkey-hex
 *   crl.pem    current revocation list
 *   certs/     issued certificates, certs/<serial>.pem
 * Issue order: serial, index, certificate, CRL. A crash leaves at worst a serial that was
 * consumed but never used, or an index line for a certificate nobody received; never a
 * certificate that the index (and so revocation) does not know.
 *
 * Verification checks, in OpenSSL's order, signature chain to the CA, validity period and
 * revocation (a CRL is required), then role; the failure reason names what failed.
 */
#ifndef CND_CA_H
#define CND_CA_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_CA_NAME_MAX     64
#define CND_CA_DEFAULT_DAYS 30
#define CND_CA_ROOT_DAYS    3650
#define CND_CA_CRL_DAYS     30

/* 1 if role is one of site, device, coordinator, auditor. */
int cnd_ca_role_valid(const char *role);

/* Creates a CA in dir (created 0700 if missing): key, self-signed certificate valid `days`,
 * serial 1, empty index and CRL. Refuses with CND_EEXIST if dir/ca.key exists. federation names
 * the federation (O= and the CA's CN). Returns 0, CND_EEXIST, CND_EINVAL, CND_EIO or CND_ECRYPTO.
 */
CND_MUST_USE int cnd_ca_init(const char *dir, const char *federation, int days, int64_t now);

typedef struct {
    uint64_t serial;    /* serial number of the new certificate */
    int64_t not_before; /* Unix seconds */
    int64_t not_after;  /* Unix seconds */
    char path[4096];    /* where the certificate was written */
} cnd_ca_issued_t;

/* Issues a certificate for Ed25519 public key pk. name: 1..64 of [A-Za-z0-9._-]; role: see
 * cnd_ca_role_valid; days: 1..3650. out_path NULL writes dir/certs/<serial>.pem. Returns 0,
 * CND_EINVAL (naming the bad argument), CND_EPERM (CA key readable by others), CND_EIO,
 * CND_EFORMAT or CND_ECRYPTO. */
CND_MUST_USE int cnd_ca_issue(cnd_ca_issued_t *out, const char *dir, const char *name,
                              const char *role, const uint8_t pk[32], int days, int64_t now,
                              const char *out_path);

/* Marks serial revoked in the index and re-signs the CRL. CND_ENOTFOUND if the serial was never
 * issued, CND_EEXIST if it is already revoked. */
CND_MUST_USE int cnd_ca_revoke(const char *dir, uint64_t serial, int64_t now);

/* Re-signs the CRL (valid from now for `days`, 0 = CND_CA_CRL_DAYS) from the index. */
CND_MUST_USE int cnd_ca_refresh_crl(const char *dir, int days, int64_t now);

/* One line of the index. */
typedef struct {
    uint64_t serial;
    int revoked; /* 1 if revoked */
    int64_t not_before, not_after, revoked_at;
    char name[CND_CA_NAME_MAX + 1];
    char role[16];
    uint8_t pubkey[32];
} cnd_ca_entry_t;

/* Reads dir/index into a malloc'd array (caller frees). CND_EFORMAT names a bad line. */
CND_MUST_USE int cnd_ca_index_load(cnd_ca_entry_t **entries, size_t *n, const char *dir);

/* --- verification ------------------------------------------------------------------------- */

typedef enum {
    CND_CERT_OK = 0,
    CND_CERT_MALFORMED,     /* CND_EFORMAT: not a PEM X.509 certificate with an Ed25519 key */
    CND_CERT_UNTRUSTED,     /* CND_ECRYPTO: not signed by this CA (or altered after signing) */
    CND_CERT_EXPIRED,       /* CND_ETIMEOUT: now is after notAfter */
    CND_CERT_NOT_YET_VALID, /* CND_ETIMEOUT: now is before notBefore */
    CND_CERT_REVOKED,       /* CND_EPERM: serial is on the CA's revocation list */
    CND_CERT_CRL,           /* CND_ECRYPTO: the CRL is missing, expired or not the CA's */
    CND_CERT_WRONG_ROLE,    /* CND_EPERM: role differs from the one required */
} cnd_cert_fail_t;

typedef struct {
    char name[CND_CA_NAME_MAX + 1]; /* subject CN */
    char role[16];                  /* subject OU */
    uint64_t serial;
    int64_t not_before, not_after; /* Unix seconds */
    uint8_t pubkey[32];            /* the node's Ed25519 identity key */
} cnd_cert_info_t;

typedef struct cnd_ca_trust cnd_ca_trust_t;

/* Loads the CA certificate and its CRL (both PEM). Returns 0, CND_EIO, CND_EFORMAT or
 * CND_ECRYPTO (CRL not signed by the CA). */
CND_MUST_USE int cnd_ca_trust_load(cnd_ca_trust_t **out, const char *ca_cert_path,
                                   const char *crl_path);
void cnd_ca_trust_destroy(cnd_ca_trust_t **t);

/* Verifies a PEM certificate at time `now`; want_role NULL accepts any role. On success fills
 * info. On failure *why (may be NULL) gives the reason listed above, the return code is the one
 * next to it, and the detail names the certificate, the CA and the dates or role involved. */
CND_MUST_USE int cnd_ca_verify(cnd_cert_info_t *info, cnd_cert_fail_t *why, const cnd_ca_trust_t *t,
                               const uint8_t *pem, size_t len, const char *want_role, int64_t now);

const char *cnd_cert_fail_name(cnd_cert_fail_t why);

/* Reads the fields of a certificate (PEM or DER) WITHOUT verifying anything: for display
 * (`site list`, expiry warnings) and for naming certificates in messages, never for a decision
 * to trust. Returns 0 or CND_EFORMAT (not an X.509 certificate with an Ed25519 key). */
CND_MUST_USE int cnd_ca_inspect(cnd_cert_info_t *info, const uint8_t *cert, size_t len);

/* When the loaded CA certificate stops being valid, and when its revocation list needs the next
 * re-signing (nextUpdate; 0 if the CRL has none). Unix seconds. */
void cnd_ca_trust_dates(const cnd_ca_trust_t *t, int64_t *ca_not_after, int64_t *crl_next_update);

#endif
