/*
 * cert.c: PEM/DER conversion and checks of node certificates (see cert.h).
 */
#include "cert.h"
#include "fileio.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

int cnd_cert_to_der(uint8_t **der, size_t *len, const uint8_t *in, size_t in_len, const char *what)
{
    *der = NULL;
    *len = 0;
    X509 *x = NULL;
    if (in_len > 0 && in[0] == 0x30) {
        const unsigned char *p = in;
        x = d2i_X509(NULL, &p, (long)in_len);
        if (x && p != in + in_len) {
            X509_free(x);
            x = NULL;
        }
    } else if (in_len > 0 && in_len < (1u << 20)) {
        BIO *b = BIO_new_mem_buf(in, (int)in_len);
        x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    }
    if (!x) return cnd_errf(CND_EFORMAT, "%s: not an X.509 certificate (PEM or DER)", what);
    unsigned char *out = NULL;
    int n = i2d_X509(x, &out);
    X509_free(x);
    if (n <= 0 || !out) return cnd_errf(CND_ENOMEM, "%s: cannot encode the certificate", what);
    *der = malloc((size_t)n);
    if (*der) memcpy(*der, out, (size_t)n);
    OPENSSL_free(out);
    if (!*der) return cnd_errf(CND_ENOMEM, "%s: out of memory", what);
    *len = (size_t)n;
    return 0;
}

int cnd_cert_read_der(uint8_t **der, size_t *len, const char *path)
{
    uint8_t *b = NULL;
    size_t n = 0;
    int rc = cnd_file_read(path, 1 << 20, &b, &n);
    if (rc) return rc;
    rc = cnd_cert_to_der(der, len, b, n, path);
    free(b);
    return rc;
}

int cnd_cert_check_trust(cnd_cert_info_t *info, const cnd_ca_trust_t *t, const uint8_t *der,
                         size_t len, const char *role, const char *name, int64_t now)
{
    memset(info, 0, sizeof *info);
    const unsigned char *p = der;
    X509 *x = len ? d2i_X509(NULL, &p, (long)len) : NULL;
    if (!x || p != der + len) {
        X509_free(x);
        return cnd_errf(CND_EFORMAT, "certificate of '%s': not DER X.509", name ? name : "?");
    }
    BIO *b = BIO_new(BIO_s_mem());
    int ok = b && PEM_write_bio_X509(b, x);
    X509_free(x);
    char *pem = NULL;
    long pn = ok ? BIO_get_mem_data(b, &pem) : 0;
    cnd_cert_fail_t why;
    int rc = ok && pn > 0
                 ? cnd_ca_verify(info, &why, t, (const uint8_t *)pem, (size_t)pn, role, now)
                 : cnd_errf(CND_ENOMEM, "certificate: out of memory");
    BIO_free(b);
    if (rc) return cnd_err_wrap(rc, "certificate of '%s'", name ? name : "?");
    if (name && strcmp(info->name, name) != 0)
        return cnd_errf(CND_EPERM, "certificate names '%s', not '%s'", info->name, name);
    return 0;
}

int cnd_cert_check(cnd_cert_info_t *info, const char *ca_cert, const char *ca_crl,
                   const uint8_t *der, size_t len, const char *role, const char *name, int64_t now)
{
    memset(info, 0, sizeof *info);
    cnd_ca_trust_t *t = NULL;
    int rc = cnd_ca_trust_load(&t, ca_cert, ca_crl);
    if (rc) return cnd_err_wrap(rc, "certificate of '%s'", name ? name : "?");
    rc = cnd_cert_check_trust(info, t, der, len, role, name, now);
    cnd_ca_trust_destroy(&t);
    return rc;
}
