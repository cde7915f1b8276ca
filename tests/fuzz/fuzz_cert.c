/*
 * fuzz_cert.c: the checks of node certificates received from the network (Hello.certificate,
 * RoundStart.neighbours) and read from files (coordinator/coord_cert.c over OpenSSL and
 * crypto/ca.c): PEM or DER to DER, then verification against the federation CA and its CRL,
 * role and name.
 *
 * The CA certificate and CRL trusted here are a test CA (fuzz_cert_ca.h) whose certificates
 * are the seeds in corpus/cert/ (one site, one device, one revoked); "now" is fixed inside
 * their validity, so verification is deterministic. A certificate that verifies must name a
 * node and a role and carry a key, and must verify again as DER re-encoded from PEM.
 */
#include "ca.h"
#include "cert.h"
#include "fuzz.h"

#include "fuzz_cert_ca.h"

static cnd_ca_trust_t *s_trust;

static void s_init(void)
{
    if (s_trust) return;
    const char *ca = fuzz_file(2, s_ca_pem, strlen(s_ca_pem));
    const char *crl = fuzz_file(3, s_crl_pem, strlen(s_crl_pem));
    if (cnd_ca_trust_load(&s_trust, ca, crl) != 0) abort();
}

static void s_check(const uint8_t *der, size_t n)
{
    static const char *roles[] = {NULL, "site", "device"};
    for (int i = 0; i < 3; i++) {
        cnd_cert_info_t info;
        int rc = cnd_cert_check_trust(&info, s_trust, der, n, roles[i], NULL, S_NOW);
        if (rc == 0) {
            fuzz_note("certificate verified");
            if (!info.name[0] || !cnd_ca_role_valid(info.role)) abort();
            if (cnd_cert_check_trust(&info, s_trust, der, n, roles[i], info.name, S_NOW) != 0)
                abort();
            if (cnd_cert_check_trust(&info, s_trust, der, n, roles[i], "another-name", S_NOW) == 0)
                abort();
        }
        fuzz_touch_error();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_init();
    s_check(data, size);
    uint8_t *der = NULL;
    size_t n = 0;
    if (cnd_cert_to_der(&der, &n, data, size, "input") == 0) {
        if (!n) abort();
        s_check(der, n);
        free(der);
    }
    fuzz_touch_error();
    cnd_cert_info_t info;
    cnd_cert_fail_t why;
    fuzz_sink += cnd_ca_verify(&info, &why, s_trust, data, size, NULL, S_NOW);
    fuzz_touch_error();
    return 0;
}
