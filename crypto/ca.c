/*
 * ca.c: see ca.h. All X.509 and CRL work is OpenSSL's; this file only arranges fields, keeps the
 * CA's state files, and turns OpenSSL's verification error into a reason a person can act on.
 * OpenSSL objects are built in memory and serialized through memory BIOs so that every file goes
 * through cnd_file_write_atomic.
 */
#include "ca.h"
#include "clock.h"
#include "digest.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_SKEW      300 /* notBefore is this many seconds before issue */
#define S_INDEX_MAX ((size_t)64 << 20)

static const char *const s_roles[] = {"site", "device", "coordinator", "auditor"};

int cnd_ca_role_valid(const char *role)
{
    for (size_t i = 0; role && i < sizeof s_roles / sizeof s_roles[0]; i++)
        if (strcmp(role, s_roles[i]) == 0) return 1;
    return 0;
}

static int s_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > CND_CA_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int s_ossl(int code, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return cnd_errf(code, "%s%s%s", what, buf[0] ? ": " : "", buf);
}

static int s_path(char *out, const char *dir, const char *file)
{
    if (snprintf(out, PATH_MAX, "%s/%s", dir, file) >= PATH_MAX)
        return cnd_errf(CND_EINVAL, "%s: path too long", dir);
    return 0;
}

/* --- files -------------------------------------------------------------------------------- */

/* Writes what a PEM writer put into a memory BIO to path atomically. */
static int s_write_bio(const char *path, BIO *b, mode_t mode)
{
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    if (n <= 0) return cnd_errf(CND_ECRYPTO, "%s: nothing to write", path);
    return cnd_file_write_atomic(path, p, (size_t)n, mode);
}

static int s_read_x509(X509 **out, const char *path)
{
    *out = NULL;
    uint8_t *d = NULL;
    size_t n = 0;
    int rc = cnd_file_read(path, 1 << 20, &d, &n);
    if (rc) return rc;
    BIO *b = BIO_new_mem_buf(d, (int)n);
    *out = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    free(d);
    if (!*out) return s_ossl(CND_EFORMAT, "not a PEM certificate");
    return 0;
}

static int s_load_key(EVP_PKEY **out, const char *dir)
{
    *out = NULL;
    char path[PATH_MAX];
    int rc = s_path(path, dir, "ca.key");
    if (rc) return rc;
    struct stat st;
    if (stat(path, &st) != 0)
        return cnd_errf(CND_EIO, "%s: cannot open: %s (run condenser ca init?)", path,
                        strerror(errno));
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        return cnd_errf(CND_EPERM,
                        "%s: permissions %04o let other users read the CA key; run 'chmod 600 %s'",
                        path, (unsigned)(st.st_mode & 07777), path);
    uint8_t *d = NULL;
    size_t n = 0;
    if ((rc = cnd_file_read(path, 1 << 16, &d, &n))) return rc;
    BIO *b = BIO_new_mem_buf(d, (int)n);
    *out = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    OPENSSL_cleanse(d, n);
    free(d);
    if (!*out) return s_ossl(CND_EFORMAT, "ca.key is not a PEM private key");
    if (EVP_PKEY_get_base_id(*out) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(*out);
        *out = NULL;
        return cnd_errf(CND_EFORMAT, "%s: the CA key must be Ed25519", path);
    }
    return 0;
}

/* Exclusive lock on dir/lock for the duration of a state change. Returns the fd or < 0. */
static int s_lock(const char *dir)
{
    char path[PATH_MAX];
    if (s_path(path, dir, "lock")) return CND_EINVAL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return cnd_errf(CND_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX) != 0) {
        close(fd);
        return cnd_errf(CND_EIO, "%s: cannot lock: %s", path, strerror(errno));
    }
    return fd;
}

static void s_unlock(int fd)
{
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

static int s_read_serial(uint64_t *out, const char *dir)
{
    char path[PATH_MAX];
    int rc = s_path(path, dir, "serial");
    uint8_t *d = NULL;
    size_t n = 0;
    if (!rc) rc = cnd_file_read(path, 64, &d, &n);
    if (rc) return rc;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull((char *)d, &end, 10);
    int bad = errno || end == (char *)d || (*end && strcmp(end, "\n") != 0) || v == 0;
    free(d);
    if (bad) return cnd_errf(CND_EFORMAT, "%s: not a serial number", path);
    *out = v;
    return 0;
}

static int s_write_text(const char *dir, const char *file, const char *text, size_t len)
{
    char path[PATH_MAX];
    int rc = s_path(path, dir, file);
    return rc ? rc : cnd_file_write_atomic(path, text, len, 0644);
}

int cnd_ca_index_load(cnd_ca_entry_t **entries, size_t *n, const char *dir)
{
    *entries = NULL;
    *n = 0;
    char path[PATH_MAX];
    int rc = s_path(path, dir, "index");
    uint8_t *d = NULL;
    size_t len = 0;
    if (!rc) rc = cnd_file_read(path, S_INDEX_MAX, &d, &len);
    if (rc) return rc;
    size_t cap = 0, cnt = 0, line = 0;
    cnd_ca_entry_t *v = NULL;
    char *save = NULL;
    for (char *l = strtok_r((char *)d, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        line++;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            cnd_ca_entry_t *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                rc = cnd_errf(CND_ENOMEM, "out of memory reading %s", path);
                break;
            }
            v = nv;
        }
        cnd_ca_entry_t *e = &v[cnt];
        memset(e, 0, sizeof *e);
        unsigned long long serial;
        long long nb, na, ra;
        char st[2], name[CND_CA_NAME_MAX + 2], role[17], hex[66];
        int got = sscanf(l, "%llu\t%1[VR]\t%lld\t%lld\t%lld\t%65[^\t]\t%16[^\t]\t%65s", &serial, st,
                         &nb, &na, &ra, name, role, hex);
        if (got != 8 || !s_name_valid(name) || !cnd_ca_role_valid(role) || strlen(hex) != 64 ||
            cnd_unhex(e->pubkey, 32, hex) != 0) {
            rc = cnd_errf(CND_EFORMAT, "%s: line %zu is not a valid index entry", path, line);
            break;
        }
        e->serial = serial;
        e->revoked = st[0] == 'R';
        e->not_before = nb;
        e->not_after = na;
        e->revoked_at = ra;
        strcpy(e->name, name);
        strcpy(e->role, role);
        cnt++;
    }
    free(d);
    if (rc) {
        free(v);
        return rc;
    }
    *entries = v;
    *n = cnt;
    return 0;
}

static int s_index_write(const char *dir, const cnd_ca_entry_t *e, size_t n)
{
    size_t cap = n * 256 + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) return cnd_errf(CND_ENOMEM, "out of memory writing the index");
    for (size_t i = 0; i < n; i++) {
        char hex[65];
        len +=
            (size_t)snprintf(buf + len, cap - len,
                             "%" PRIu64 "\t%c\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%s\t%s\t%s\n",
                             e[i].serial, e[i].revoked ? 'R' : 'V', e[i].not_before, e[i].not_after,
                             e[i].revoked_at, e[i].name, e[i].role, cnd_hex(hex, e[i].pubkey, 32));
    }
    int rc = s_write_text(dir, "index", len ? buf : "", len);
    free(buf);
    return rc;
}

/* --- building certificates and CRLs ------------------------------------------------------- */

static int s_set_time(ASN1_TIME *t, int64_t when)
{
    return ASN1_TIME_set(t, (time_t)when) != NULL;
}

static int s_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext) return 0;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

static int s_add_name(X509_NAME *n, const char *field, const char *value)
{
    return X509_NAME_add_entry_by_txt(n, field, MBSTRING_UTF8, (const unsigned char *)value, -1, -1,
                                      0);
}

static int s_build_crl(BIO *out, X509 *ca, EVP_PKEY *key, const cnd_ca_entry_t *e, size_t n,
                       int days, int64_t now)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *t = ASN1_TIME_new();
    int ok = crl && t && X509_CRL_set_version(crl, X509_CRL_VERSION_2) &&
             X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) && s_set_time(t, now) &&
             X509_CRL_set1_lastUpdate(crl, t) && s_set_time(t, now + (int64_t)days * 86400) &&
             X509_CRL_set1_nextUpdate(crl, t);
    for (size_t i = 0; ok && i < n; i++) {
        if (!e[i].revoked) continue;
        X509_REVOKED *r = X509_REVOKED_new();
        ASN1_INTEGER *sn = ASN1_INTEGER_new();
        ok = r && sn && ASN1_INTEGER_set_uint64(sn, e[i].serial) &&
             X509_REVOKED_set_serialNumber(r, sn) && s_set_time(t, e[i].revoked_at) &&
             X509_REVOKED_set_revocationDate(r, t) && X509_CRL_add0_revoked(crl, r);
        ASN1_INTEGER_free(sn);
        if (!ok) X509_REVOKED_free(r);
    }
    ok = ok && X509_CRL_sort(crl) && X509_CRL_sign(crl, key, NULL) > 0 &&
         PEM_write_bio_X509_CRL(out, crl);
    X509_CRL_free(crl);
    ASN1_TIME_free(t);
    return ok ? 0 : s_ossl(CND_ECRYPTO, "cannot build the revocation list");
}

/* Re-signs dir/crl.pem from the index; caller holds the lock. */
static int s_refresh_crl_locked(const char *dir, int days, int64_t now)
{
    char path[PATH_MAX];
    EVP_PKEY *key = NULL;
    X509 *ca = NULL;
    cnd_ca_entry_t *e = NULL;
    size_t n = 0;
    BIO *b = BIO_new(BIO_s_mem());
    int rc = b ? 0 : cnd_errf(CND_ENOMEM, "out of memory");
    if (!rc) rc = s_load_key(&key, dir);
    if (!rc) rc = s_path(path, dir, "ca.crt");
    if (!rc) rc = s_read_x509(&ca, path);
    if (!rc) rc = cnd_ca_index_load(&e, &n, dir);
    if (!rc) rc = s_build_crl(b, ca, key, e, n, days > 0 ? days : CND_CA_CRL_DAYS, now);
    if (!rc) rc = s_path(path, dir, "crl.pem");
    if (!rc) rc = s_write_bio(path, b, 0644);
    free(e);
    X509_free(ca);
    EVP_PKEY_free(key);
    BIO_free(b);
    return rc;
}

int cnd_ca_refresh_crl(const char *dir, int days, int64_t now)
{
    int fd = s_lock(dir);
    if (fd < 0) return fd;
    int rc = s_refresh_crl_locked(dir, days, now);
    s_unlock(fd);
    return rc;
}

int cnd_ca_init(const char *dir, const char *federation, int days, int64_t now)
{
    if (!federation || !federation[0] || strlen(federation) > CND_CA_NAME_MAX)
        return cnd_errf(CND_EINVAL, "federation name must be 1..%d bytes", CND_CA_NAME_MAX);
    if (days < 1 || days > 36500) return cnd_errf(CND_EINVAL, "--days %d outside [1, 36500]", days);
    char path[PATH_MAX], certs[PATH_MAX];
    int rc = cnd_mkdir_p(dir, 0700);
    if (!rc) rc = s_path(path, dir, "ca.key");
    if (!rc) rc = s_path(certs, dir, "certs");
    if (rc) return rc;
    if (cnd_file_exists(path))
        return cnd_errf(CND_EEXIST, "%s already exists; refusing to replace a CA", path);
    if ((rc = cnd_mkdir_p(certs, 0755))) return rc;
    int fd = s_lock(dir);
    if (fd < 0) return fd;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    X509 *x = X509_new();
    ASN1_TIME *t = ASN1_TIME_new();
    BIO *kb = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
    char cn[CND_CA_NAME_MAX + 8];
    snprintf(cn, sizeof cn, "%s CA", federation);
    X509_NAME *name = x ? X509_get_subject_name(x) : NULL;
    /* The CA's own serial is random with the top bit set, far from the leaves' 1, 2, 3, ... */
    uint64_t ca_serial = 0;
    int ok = RAND_bytes((unsigned char *)&ca_serial, sizeof ca_serial) == 1;
    ca_serial |= (uint64_t)1 << 63;
    ok = ok && key && x && t && kb && cb && X509_set_version(x, X509_VERSION_3) &&
         ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), ca_serial) &&
         s_set_time(t, now - S_SKEW) && X509_set1_notBefore(x, t) &&
         s_set_time(t, now + (int64_t)days * 86400) && X509_set1_notAfter(x, t) &&
         s_add_name(name, "O", federation) && s_add_name(name, "CN", cn) &&
         X509_set_issuer_name(x, name) && X509_set_pubkey(x, key) &&
         s_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
         s_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") &&
         s_add_ext(x, x, NID_subject_key_identifier, "hash") && X509_sign(x, key, NULL) > 0 &&
         PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) && PEM_write_bio_X509(cb, x);
    if (!ok) rc = s_ossl(CND_ECRYPTO, "cannot create the CA key and certificate");
    /* Index and serial first, key last: a half-made CA has no key, so init can be rerun. */
    if (!rc) rc = s_write_text(dir, "index", "", 0);
    if (!rc) rc = s_write_text(dir, "serial", "1\n", 2);
    if (!rc) rc = s_path(path, dir, "ca.crt");
    if (!rc) rc = s_write_bio(path, cb, 0644);
    if (!rc) rc = s_path(path, dir, "ca.key");
    if (!rc) rc = s_write_bio(path, kb, 0600);
    if (!rc) rc = s_refresh_crl_locked(dir, 0, now);
    BIO_free(kb);
    BIO_free(cb);
    ASN1_TIME_free(t);
    X509_free(x);
    EVP_PKEY_free(key);
    s_unlock(fd);
    return rc;
}

int cnd_ca_issue(cnd_ca_issued_t *out, const char *dir, const char *name, const char *role,
                 const uint8_t pk[32], int days, int64_t now, const char *out_path)
{
    memset(out, 0, sizeof *out);
    if (!s_name_valid(name))
        return cnd_errf(CND_EINVAL, "--name '%s': use 1..%d of A-Z a-z 0-9 . _ -", name ? name : "",
                        CND_CA_NAME_MAX);
    if (!cnd_ca_role_valid(role))
        return cnd_errf(CND_EINVAL, "--role '%s': must be site, device, coordinator or auditor",
                        role ? role : "");
    if (days < 1 || days > CND_CA_ROOT_DAYS)
        return cnd_errf(CND_EINVAL, "--days %d outside [1, %d]", days, CND_CA_ROOT_DAYS);
    EVP_PKEY *node = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pk, 32);
    if (!node) return s_ossl(CND_EINVAL, "the public key is not a valid Ed25519 key");
    int fd = s_lock(dir);
    if (fd < 0) {
        EVP_PKEY_free(node);
        return fd;
    }
    char path[PATH_MAX];
    EVP_PKEY *key = NULL;
    X509 *ca = NULL, *x = NULL;
    ASN1_TIME *t = NULL;
    BIO *b = NULL;
    cnd_ca_entry_t *e = NULL;
    size_t n = 0;
    uint64_t serial = 0;
    int rc = s_load_key(&key, dir);
    if (!rc) rc = s_path(path, dir, "ca.crt");
    if (!rc) rc = s_read_x509(&ca, path);
    if (!rc) rc = cnd_ca_index_load(&e, &n, dir);
    if (!rc) rc = s_read_serial(&serial, dir);
    if (rc) goto done;
    for (size_t i = 0; i < n; i++)
        if (e[i].serial >= serial) {
            rc = cnd_errf(CND_EFORMAT,
                          "%s/serial is %" PRIu64 " but serial %" PRIu64
                          " was already issued; the CA state is inconsistent",
                          dir, serial, e[i].serial);
            goto done;
        }
    x = X509_new();
    t = ASN1_TIME_new();
    b = BIO_new(BIO_s_mem());
    const char *org = NULL;
    X509_NAME *cas = X509_get_subject_name(ca);
    int oi = X509_NAME_get_index_by_NID(cas, NID_organizationName, -1);
    if (oi >= 0)
        org = (const char *)ASN1_STRING_get0_data(
            X509_NAME_ENTRY_get_data(X509_NAME_get_entry(cas, oi)));
    X509_NAME *subj = x ? X509_get_subject_name(x) : NULL;
    out->serial = serial;
    out->not_before = now - S_SKEW;
    out->not_after = now + (int64_t)days * 86400;
    int ok = x && t && b && X509_set_version(x, X509_VERSION_3) &&
             ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) &&
             s_set_time(t, out->not_before) && X509_set1_notBefore(x, t) &&
             s_set_time(t, out->not_after) && X509_set1_notAfter(x, t) &&
             (!org || s_add_name(subj, "O", org)) && s_add_name(subj, "OU", role) &&
             s_add_name(subj, "CN", name) && X509_set_issuer_name(x, cas) &&
             X509_set_pubkey(x, node) &&
             s_add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") &&
             s_add_ext(x, ca, NID_key_usage, "critical,digitalSignature") &&
             s_add_ext(x, ca, NID_subject_key_identifier, "hash") &&
             s_add_ext(x, ca, NID_authority_key_identifier, "keyid:always") &&
             X509_sign(x, key, NULL) > 0 && PEM_write_bio_X509(b, x);
    if (!ok) {
        rc = s_ossl(CND_ECRYPTO, "cannot build the certificate");
        goto done;
    }
    /* serial -> index -> certificate -> CRL (see ca.h) */
    char sbuf[32];
    int sl = snprintf(sbuf, sizeof sbuf, "%" PRIu64 "\n", serial + 1);
    if ((rc = s_write_text(dir, "serial", sbuf, (size_t)sl))) goto done;
    cnd_ca_entry_t *ne = realloc(e, (n + 1) * sizeof *e);
    if (!ne) {
        rc = cnd_errf(CND_ENOMEM, "out of memory");
        goto done;
    }
    e = ne;
    memset(&e[n], 0, sizeof e[n]);
    e[n].serial = serial;
    e[n].not_before = out->not_before;
    e[n].not_after = out->not_after;
    strcpy(e[n].name, name);
    strcpy(e[n].role, role);
    memcpy(e[n].pubkey, pk, 32);
    if ((rc = s_index_write(dir, e, n + 1))) goto done;
    if (out_path) {
        if (snprintf(out->path, sizeof out->path, "%s", out_path) >= (int)sizeof out->path)
            rc = cnd_errf(CND_EINVAL, "%s: path too long", out_path);
    } else if (snprintf(out->path, sizeof out->path, "%s/certs/%" PRIu64 ".pem", dir, serial) >=
               (int)sizeof out->path) {
        rc = cnd_errf(CND_EINVAL, "%s: path too long", dir);
    }
    if (!rc) rc = s_write_bio(out->path, b, 0644);
    if (!rc) rc = s_refresh_crl_locked(dir, 0, now);
done:
    free(e);
    BIO_free(b);
    ASN1_TIME_free(t);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(node);
    s_unlock(fd);
    return rc;
}

int cnd_ca_revoke(const char *dir, uint64_t serial, int64_t now)
{
    int fd = s_lock(dir);
    if (fd < 0) return fd;
    cnd_ca_entry_t *e = NULL;
    size_t n = 0, i = 0;
    int rc = cnd_ca_index_load(&e, &n, dir);
    if (!rc) {
        while (i < n && e[i].serial != serial) i++;
        if (i == n)
            rc = cnd_errf(CND_ENOTFOUND, "serial %" PRIu64 " was never issued by the CA in %s",
                          serial, dir);
        else if (e[i].revoked)
            rc = cnd_errf(CND_EEXIST, "serial %" PRIu64 " (%s) is already revoked", serial,
                          e[i].name);
    }
    if (!rc) {
        e[i].revoked = 1;
        e[i].revoked_at = now;
        rc = s_index_write(dir, e, n);
    }
    if (!rc) rc = s_refresh_crl_locked(dir, 0, now);
    free(e);
    s_unlock(fd);
    return rc;
}

/* --- verification ------------------------------------------------------------------------- */

struct cnd_ca_trust {
    X509 *ca;      /* the federation's CA certificate */
    X509_CRL *crl; /* its current revocation list */
};

int cnd_ca_trust_load(cnd_ca_trust_t **out, const char *ca_cert_path, const char *crl_path)
{
    *out = NULL;
    cnd_ca_trust_t *t = calloc(1, sizeof *t);
    if (!t) return cnd_errf(CND_ENOMEM, "out of memory");
    int rc = s_read_x509(&t->ca, ca_cert_path);
    if (rc) rc = cnd_err_wrap(rc, "%s", ca_cert_path);
    uint8_t *d = NULL;
    size_t n = 0;
    if (!rc) rc = cnd_file_read(crl_path, 64 << 20, &d, &n);
    if (!rc) {
        BIO *b = BIO_new_mem_buf(d, (int)n);
        t->crl = b ? PEM_read_bio_X509_CRL(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!t->crl) rc = cnd_err_wrap(s_ossl(CND_EFORMAT, "not a PEM CRL"), "%s", crl_path);
    }
    free(d);
    if (!rc) {
        EVP_PKEY *k = X509_get0_pubkey(t->ca);
        if (!k || X509_CRL_verify(t->crl, k) != 1)
            rc = cnd_errf(CND_ECRYPTO, "%s: revocation list is not signed by the CA in %s",
                          crl_path, ca_cert_path);
        ERR_clear_error();
    }
    if (rc) {
        cnd_ca_trust_destroy(&t);
        return rc;
    }
    *out = t;
    return 0;
}

void cnd_ca_trust_destroy(cnd_ca_trust_t **t)
{
    if (!t || !*t) return;
    X509_free((*t)->ca);
    X509_CRL_free((*t)->crl);
    free(*t);
    *t = NULL;
}

const char *cnd_cert_fail_name(cnd_cert_fail_t why)
{
    switch (why) {
    case CND_CERT_OK: return "ok";
    case CND_CERT_MALFORMED: return "malformed";
    case CND_CERT_UNTRUSTED: return "not issued by this CA";
    case CND_CERT_EXPIRED: return "expired";
    case CND_CERT_NOT_YET_VALID: return "not yet valid";
    case CND_CERT_REVOKED: return "revoked";
    case CND_CERT_CRL: return "revocation list unusable";
    case CND_CERT_WRONG_ROLE: return "wrong role";
    }
    return "unknown";
}

static int64_t s_time(const ASN1_TIME *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
    return (int64_t)timegm(&tm);
}

void cnd_ca_trust_dates(const cnd_ca_trust_t *t, int64_t *ca_not_after, int64_t *crl_next_update)
{
    *ca_not_after = s_time(X509_get0_notAfter(t->ca));
    const ASN1_TIME *nu = X509_CRL_get0_nextUpdate(t->crl);
    *crl_next_update = nu ? s_time(nu) : 0;
}

static void s_entry_text(char *out, size_t n, X509_NAME *name, int nid)
{
    out[0] = 0;
    int i = X509_NAME_get_index_by_NID(name, nid, -1);
    if (i < 0) return;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    int len = ASN1_STRING_length(s);
    if (len < 0 || (size_t)len >= n) return;
    memcpy(out, ASN1_STRING_get0_data(s), (size_t)len);
    out[len] = 0;
}

static int s_fail(cnd_cert_fail_t *why, cnd_cert_fail_t reason, int code)
{
    if (why) *why = reason;
    return code;
}

/* Turns OpenSSL's verification error into a reason and a sentence. */
static int s_verify_error(cnd_cert_fail_t *why, int err, int depth, const cnd_cert_info_t *ci,
                          const cnd_ca_trust_t *t, const ASN1_INTEGER *sn)
{
    const char *es = X509_verify_cert_error_string(err);
    char when[32];
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        if (depth)
            return s_fail(why, CND_CERT_UNTRUSTED,
                          cnd_errf(CND_ECRYPTO, "the CA certificate expired at %s",
                                   cnd_iso8601(when, s_time(X509_get0_notAfter(t->ca)))));
        return s_fail(why, CND_CERT_EXPIRED,
                      cnd_errf(CND_ETIMEOUT, "certificate '%s' (serial %" PRIu64 ") expired at %s",
                               ci->name, ci->serial, cnd_iso8601(when, ci->not_after)));
    case X509_V_ERR_CERT_NOT_YET_VALID:
        if (depth)
            return s_fail(why, CND_CERT_UNTRUSTED,
                          cnd_errf(CND_ECRYPTO, "the CA certificate is not valid yet"));
        return s_fail(why, CND_CERT_NOT_YET_VALID,
                      cnd_errf(CND_ETIMEOUT,
                               "certificate '%s' (serial %" PRIu64 ") is not valid before %s",
                               ci->name, ci->serial, cnd_iso8601(when, ci->not_before)));
    case X509_V_ERR_CERT_REVOKED: {
        X509_REVOKED *rev = NULL;
        int64_t at = 0;
        if (X509_CRL_get0_by_serial(t->crl, &rev, (ASN1_INTEGER *)sn) == 1 && rev)
            at = s_time(X509_REVOKED_get0_revocationDate(rev));
        return s_fail(why, CND_CERT_REVOKED,
                      cnd_errf(CND_EPERM, "certificate '%s' (serial %" PRIu64 ") was revoked at %s",
                               ci->name, ci->serial, cnd_iso8601(when, at)));
    }
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
        return s_fail(why, CND_CERT_CRL,
                      cnd_errf(CND_ECRYPTO,
                               "cannot check revocation of '%s': %s (re-sign it with condenser "
                               "ca crl)",
                               ci->name, es));
    default:
        return s_fail(why, CND_CERT_UNTRUSTED,
                      cnd_errf(CND_ECRYPTO,
                               "certificate '%s' (serial %" PRIu64
                               ") was not issued by this CA or was altered: %s",
                               ci->name, ci->serial, es));
    }
}

/* The fields cnd_ca_verify reports, read from x without any check. */
static void s_info(cnd_cert_info_t *ci, X509 *x)
{
    memset(ci, 0, sizeof *ci);
    X509_NAME *subj = X509_get_subject_name(x);
    s_entry_text(ci->name, sizeof ci->name, subj, NID_commonName);
    s_entry_text(ci->role, sizeof ci->role, subj, NID_organizationalUnitName);
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    if (!sn || ASN1_INTEGER_get_uint64(&ci->serial, sn) != 1) ci->serial = 0;
    ci->not_before = s_time(X509_get0_notBefore(x));
    ci->not_after = s_time(X509_get0_notAfter(x));
}

/* The raw Ed25519 key of x into pk; 0 or -1 when x carries another kind of key. */
static int s_ed_key(uint8_t pk[32], X509 *x)
{
    EVP_PKEY *k = X509_get0_pubkey(x);
    size_t n = 32;
    if (!k || EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519 ||
        EVP_PKEY_get_raw_public_key(k, pk, &n) != 1 || n != 32)
        return -1;
    return 0;
}

int cnd_ca_inspect(cnd_cert_info_t *info, const uint8_t *cert, size_t len)
{
    memset(info, 0, sizeof *info);
    X509 *x = NULL;
    if (len > 0 && len < (1u << 20) && cert[0] == 0x30) {
        const unsigned char *p = cert;
        x = d2i_X509(NULL, &p, (long)len);
        if (x && p != cert + len) {
            X509_free(x);
            x = NULL;
        }
    } else if (len > 0 && len < (1u << 20)) {
        BIO *b = BIO_new_mem_buf(cert, (int)len);
        x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    }
    ERR_clear_error();
    if (!x) return cnd_errf(CND_EFORMAT, "not an X.509 certificate (PEM or DER)");
    s_info(info, x);
    int rc =
        s_ed_key(info->pubkey, x)
            ? cnd_errf(CND_EFORMAT, "certificate '%s' does not carry an Ed25519 key", info->name)
            : 0;
    X509_free(x);
    return rc;
}

int cnd_ca_verify(cnd_cert_info_t *info, cnd_cert_fail_t *why, const cnd_ca_trust_t *t,
                  const uint8_t *pem, size_t len, const char *want_role, int64_t now)
{
    memset(info, 0, sizeof *info);
    if (why) *why = CND_CERT_OK;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!x) return s_fail(why, CND_CERT_MALFORMED, s_ossl(CND_EFORMAT, "not a PEM certificate"));
    cnd_cert_info_t ci;
    s_info(&ci, x);
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    int rc = 0;
    if (s_ed_key(ci.pubkey, x))
        rc = s_fail(
            why, CND_CERT_MALFORMED,
            cnd_errf(CND_EFORMAT, "certificate '%s' does not carry an Ed25519 key", ci.name));
    /* Two passes so that failures come in the order a person needs them: first chain and
     * validity period (no CRL), then revocation. OpenSSL alone would report an expired CRL
     * before an expired certificate. */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        X509_STORE *st = X509_STORE_new();
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        unsigned long flags = X509_V_FLAG_X509_STRICT | (pass ? X509_V_FLAG_CRL_CHECK : 0);
        if (!st || !ctx || !X509_STORE_add_cert(st, t->ca) ||
            (pass && !X509_STORE_add_crl(st, t->crl)) || !X509_STORE_set_flags(st, flags) ||
            !X509_STORE_CTX_init(ctx, st, x, NULL)) {
            rc = s_ossl(CND_ENOMEM, "cannot set up certificate verification");
        } else {
            /* The caller's clock (common/clock.h), never OpenSSL's own: it sets the context's
             * X509_VERIFY_PARAM time, so tests that move the clock move verification too. */
            X509_STORE_CTX_set_time(ctx, 0, (time_t)now);
            if (X509_verify_cert(ctx) != 1)
                rc = s_verify_error(why, X509_STORE_CTX_get_error(ctx),
                                    X509_STORE_CTX_get_error_depth(ctx), &ci, t, sn);
        }
        X509_STORE_CTX_free(ctx);
        X509_STORE_free(st);
    }
    if (!rc && X509_check_ca(x) != 0)
        rc = s_fail(
            why, CND_CERT_UNTRUSTED,
            cnd_errf(CND_ECRYPTO, "certificate '%s' is a CA certificate, not a node's", ci.name));
    if (!rc && !cnd_ca_role_valid(ci.role))
        rc = s_fail(why, CND_CERT_MALFORMED,
                    cnd_errf(CND_EFORMAT, "certificate '%s' has no valid role (OU '%s')", ci.name,
                             ci.role));
    if (!rc && want_role && strcmp(ci.role, want_role) != 0)
        rc = s_fail(why, CND_CERT_WRONG_ROLE,
                    cnd_errf(CND_EPERM, "certificate '%s' has role %s, %s required", ci.name,
                             ci.role, want_role));
    ERR_clear_error();
    X509_free(x);
    if (!rc) *info = ci;
    return rc;
}
