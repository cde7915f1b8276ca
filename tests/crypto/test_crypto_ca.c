/*
 * test_crypto_ca.c: the federation CA (crypto/ca.h): issuing for every role, verification
 * results for a good certificate, expiry, not-yet-valid, revocation, wrong role, a certificate
 * from another CA, a certificate edited after signing, an expired or foreign CRL; renewal; the
 * state files (serial, index, key permissions); reading a certificate's fields without trusting
 * it (cnd_ca_inspect) and the dates of a CA and its CRL; and `condenser ca` end to end (with
 * `issue --renew` and, in test builds, the injected clock), cross-checked with `openssl verify`.
 */
#include "ca.h"
#include "cert.h"
#include "check.h"
#include "fileio.h"
#include "identity.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define T0  1800000000LL /* a fixed "now" (2027-01-15) */
#define DAY 86400LL

static char s_tmp[256];

static void s_read(uint8_t **d, size_t *n, const char *path)
{
    CHECK(cnd_file_read(path, 1 << 20, d, n) == 0);
}

static int s_verify(const cnd_ca_trust_t *t, const char *path, const char *role, int64_t now,
                    cnd_cert_fail_t *why, cnd_cert_info_t *info)
{
    uint8_t *d = NULL;
    size_t n = 0;
    s_read(&d, &n, path);
    int rc = cnd_ca_verify(info, why, t, d, n, role, now);
    free(d);
    return rc;
}

static void s_trust(cnd_ca_trust_t **t, const char *dir)
{
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/ca.crt", dir);
    snprintf(b, sizeof b, "%s/crl.pem", dir);
    CHECK(cnd_ca_trust_load(t, a, b) == 0);
}

static void test_ca(void)
{
    char dir[300], dir2[300];
    snprintf(dir, sizeof dir, "%s/ca", s_tmp);
    snprintf(dir2, sizeof dir2, "%s/other", s_tmp);
    CHECK(cnd_ca_init(dir, "test federation", 3650, T0) == 0);
    CHECK_EQ_INT(cnd_ca_init(dir, "again", 3650, T0), CND_EEXIST);
    CHECK(cnd_ca_init(dir2, "rogue federation", 3650, T0) == 0);
    char key[400];
    snprintf(key, sizeof key, "%s/ca.key", dir);
    struct stat st;
    CHECK(stat(key, &st) == 0 && (st.st_mode & 0777) == 0600);

    cnd_identity_t *node = NULL;
    CHECK(cnd_identity_generate(&node) == 0);
    const uint8_t *pk = cnd_identity_pk(node);
    static const char *roles[] = {"site", "device", "coordinator", "auditor"};
    cnd_ca_issued_t is[4];
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "node-%d", i);
        CHECK(cnd_ca_issue(&is[i], dir, name, roles[i], pk, 30, T0, NULL) == 0);
        CHECK_EQ_INT(is[i].serial, (uint64_t)i + 1);
        CHECK_EQ_INT(is[i].not_after, T0 + 30 * DAY);
    }
    cnd_ca_trust_t *t = NULL;
    s_trust(&t, dir);
    cnd_cert_info_t info;
    cnd_cert_fail_t why;
    for (int i = 0; i < 4; i++) {
        CHECK(s_verify(t, is[i].path, roles[i], T0 + DAY, &why, &info) == 0);
        CHECK(why == CND_CERT_OK);
        CHECK_EQ_INT(info.serial, (uint64_t)i + 1);
        CHECK(strcmp(info.role, roles[i]) == 0);
        CHECK(memcmp(info.pubkey, pk, 32) == 0);
    }
    CHECK(strcmp(info.name, "node-3") == 0);
    CHECK(s_verify(t, is[0].path, NULL, T0 + DAY, &why, &info) == 0);
    /* Wrong role. */
    CHECK_EQ_INT(s_verify(t, is[0].path, "coordinator", T0 + DAY, &why, &info), CND_EPERM);
    CHECK(why == CND_CERT_WRONG_ROLE);
    CHECK(strstr(cnd_err_detail(), "role site, coordinator required") != NULL);
    CHECK(info.name[0] == 0);
    /* Expired (30 days, and the CRL is still valid until T0 + 30 days). */
    CHECK_EQ_INT(s_verify(t, is[0].path, NULL, T0 + 30 * DAY + 10, &why, &info), CND_ETIMEOUT);
    CHECK(why == CND_CERT_EXPIRED);
    CHECK(strstr(cnd_err_detail(), "expired at") != NULL);
    /* Not yet valid: issued ten days later, checked in between. */
    cnd_ca_issued_t late;
    CHECK(cnd_ca_issue(&late, dir, "late", "site", pk, 30, T0 + 10 * DAY, NULL) == 0);
    cnd_ca_trust_destroy(&t);
    s_trust(&t, dir);
    CHECK_EQ_INT(s_verify(t, late.path, NULL, T0 + 5 * DAY, &why, &info), CND_ETIMEOUT);
    CHECK(why == CND_CERT_NOT_YET_VALID);
    /* The CRL re-signed at T0 + 10 days is not valid at T0 + 5: re-sign at T0 for the rest. */
    CHECK(cnd_ca_refresh_crl(dir, 0, T0) == 0);
    cnd_ca_trust_destroy(&t);
    s_trust(&t, dir);

    /* Revocation, then renewal under a new serial. */
    CHECK(cnd_ca_revoke(dir, 1, T0 + 2 * DAY) == 0);
    CHECK_EQ_INT(cnd_ca_revoke(dir, 1, T0 + 2 * DAY), CND_EEXIST);
    CHECK_EQ_INT(cnd_ca_revoke(dir, 99, T0 + 2 * DAY), CND_ENOTFOUND);
    /* A verifier with the old CRL still accepts it; reloading picks the revocation up. */
    CHECK(s_verify(t, is[0].path, "site", T0 + 3 * DAY, &why, &info) == 0);
    cnd_ca_trust_destroy(&t);
    s_trust(&t, dir);
    CHECK_EQ_INT(s_verify(t, is[0].path, "site", T0 + 3 * DAY, &why, &info), CND_EPERM);
    CHECK(why == CND_CERT_REVOKED);
    CHECK(strstr(cnd_err_detail(), "revoked at 2027-01-17") != NULL);
    CHECK(s_verify(t, is[1].path, "device", T0 + 3 * DAY, &why, &info) == 0);
    cnd_ca_issued_t renewed;
    CHECK(cnd_ca_issue(&renewed, dir, "node-0", "site", pk, 30, T0 + 3 * DAY, NULL) == 0);
    CHECK_EQ_INT(renewed.serial, 6);
    cnd_ca_trust_destroy(&t);
    s_trust(&t, dir);
    CHECK(s_verify(t, renewed.path, "site", T0 + 4 * DAY, &why, &info) == 0);
    CHECK_EQ_INT(info.serial, 6);

    /* CRL expired: the list from T0 + 3 days is valid 30 days; a 90-day certificate outlives it. */
    cnd_ca_issued_t longer;
    CHECK(cnd_ca_issue(&longer, dir, "long", "auditor", pk, 90, T0 + 3 * DAY, NULL) == 0);
    cnd_ca_trust_destroy(&t);
    s_trust(&t, dir);
    CHECK_EQ_INT(s_verify(t, longer.path, NULL, T0 + 40 * DAY, &why, &info), CND_ECRYPTO);
    CHECK(why == CND_CERT_CRL);
    CHECK(strstr(cnd_err_detail(), "ca crl") != NULL);

    /* A certificate from another CA. */
    cnd_ca_issued_t rogue;
    CHECK(cnd_ca_issue(&rogue, dir2, "node-0", "coordinator", pk, 30, T0, NULL) == 0);
    CHECK_EQ_INT(s_verify(t, rogue.path, NULL, T0 + DAY, &why, &info), CND_ECRYPTO);
    CHECK(why == CND_CERT_UNTRUSTED);

    /* A certificate edited after signing: the OU "device" becomes "Device" in the DER bytes. */
    uint8_t *d = NULL;
    size_t n = 0;
    s_read(&d, &n, is[1].path);
    BIO *b = BIO_new_mem_buf(d, (int)n);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    free(d);
    CHECK(x != NULL);
    unsigned char *der = NULL;
    int dl = i2d_X509(x, &der);
    X509_free(x);
    CHECK(dl > 0);
    int edited = 0;
    for (int i = 0; i + 6 <= dl && !edited; i++)
        if (memcmp(der + i, "device", 6) == 0) {
            der[i] = 'D';
            edited = 1;
        }
    CHECK(edited);
    const unsigned char *dp = der;
    x = d2i_X509(NULL, &dp, dl);
    CHECK(x != NULL);
    b = BIO_new(BIO_s_mem());
    CHECK(PEM_write_bio_X509(b, x) == 1);
    char *pem = NULL;
    long pl = BIO_get_mem_data(b, &pem);
    CHECK_EQ_INT(cnd_ca_verify(&info, &why, t, (uint8_t *)pem, (size_t)pl, NULL, T0 + 4 * DAY),
                 CND_ECRYPTO);
    CHECK(why == CND_CERT_UNTRUSTED);
    CHECK(strstr(cnd_err_detail(), "altered") != NULL);
    BIO_free(b);
    X509_free(x);
    OPENSSL_free(der);
    /* Garbage. */
    CHECK_EQ_INT(cnd_ca_verify(&info, &why, t, (const uint8_t *)"nope", 4, NULL, T0), CND_EFORMAT);
    CHECK(why == CND_CERT_MALFORMED);
    cnd_ca_trust_destroy(&t);

    /* A CRL from another CA is refused when loading trust. */
    char a[400], c[400];
    snprintf(a, sizeof a, "%s/ca.crt", dir);
    snprintf(c, sizeof c, "%s/crl.pem", dir2);
    CHECK_EQ_INT(cnd_ca_trust_load(&t, a, c), CND_ECRYPTO);
    CHECK(t == NULL);

    /* State files. */
    cnd_ca_entry_t *e = NULL;
    size_t ne = 0;
    CHECK(cnd_ca_index_load(&e, &ne, dir) == 0);
    CHECK_EQ_INT(ne, 7);
    CHECK(e[0].revoked && e[0].revoked_at == T0 + 2 * DAY && !e[1].revoked);
    CHECK(strcmp(e[4].name, "late") == 0 && strcmp(e[6].role, "auditor") == 0);
    CHECK(memcmp(e[3].pubkey, pk, 32) == 0);
    free(e);
    char sp[400];
    snprintf(sp, sizeof sp, "%s/serial", dir);
    s_read(&d, &n, sp);
    CHECK(strcmp((char *)d, "8\n") == 0);
    free(d);
    /* Argument checks. */
    cnd_ca_issued_t bad;
    CHECK_EQ_INT(cnd_ca_issue(&bad, dir, "no spaces", "site", pk, 30, T0, NULL), CND_EINVAL);
    CHECK_EQ_INT(cnd_ca_issue(&bad, dir, "n", "admin", pk, 30, T0, NULL), CND_EINVAL);
    CHECK_EQ_INT(cnd_ca_issue(&bad, dir, "n", "site", pk, 0, T0, NULL), CND_EINVAL);
    /* A readable CA key is refused. */
    CHECK(chmod(key, 0644) == 0);
    CHECK_EQ_INT(cnd_ca_issue(&bad, dir, "n", "site", pk, 30, T0, NULL), CND_EPERM);
    CHECK(chmod(key, 0600) == 0);
    /* A damaged index is refused with its line number, and nothing is issued. */
    char ip[400];
    snprintf(ip, sizeof ip, "%s/index", dir);
    s_read(&d, &n, ip);
    CHECK(cnd_file_write_atomic(ip, "1\tX\tjunk\n", 9, 0644) == 0);
    CHECK_EQ_INT(cnd_ca_issue(&bad, dir, "n", "site", pk, 30, T0, NULL), CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "line 1") != NULL);
    CHECK(cnd_file_write_atomic(ip, d, n, 0644) == 0);
    free(d);
    s_read(&d, &n, sp);
    CHECK(strcmp((char *)d, "8\n") == 0);
    free(d);
    cnd_identity_destroy(&node);
}

static void test_inspect(void)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/inspect", s_tmp);
    CHECK(cnd_ca_init(dir, "inspect federation", 3650, T0) == 0);
    cnd_identity_t *node = NULL;
    CHECK(cnd_identity_generate(&node) == 0);
    cnd_ca_issued_t is;
    CHECK(cnd_ca_issue(&is, dir, "ward-4", "site", cnd_identity_pk(node), 30, T0, NULL) == 0);
    /* PEM and DER give the fields verification gives. */
    uint8_t *pem = NULL, *der = NULL;
    size_t pn = 0, dn = 0;
    s_read(&pem, &pn, is.path);
    CHECK(cnd_cert_to_der(&der, &dn, pem, pn, "test") == 0);
    cnd_cert_info_t a, b, v;
    CHECK(cnd_ca_inspect(&a, pem, pn) == 0);
    CHECK(cnd_ca_inspect(&b, der, dn) == 0);
    cnd_ca_trust_t *t = NULL;
    s_trust(&t, dir);
    cnd_cert_fail_t why;
    CHECK(cnd_ca_verify(&v, &why, t, pem, pn, "site", T0 + DAY) == 0);
    CHECK(memcmp(&a, &v, sizeof a) == 0 && memcmp(&b, &v, sizeof b) == 0);
    CHECK(strcmp(a.name, "ward-4") == 0 && strcmp(a.role, "site") == 0 && a.serial == 1);
    CHECK_EQ_INT(a.not_after, T0 + 30 * DAY);
    CHECK_EQ_INT(a.not_before, T0 - 300);
    CHECK(memcmp(a.pubkey, cnd_identity_pk(node), 32) == 0);
    /* It trusts nothing: an expired certificate is read all the same... */
    CHECK(cnd_ca_inspect(&a, der, dn) == 0);
    /* ...but garbage, trailing bytes and a truncated DER are refused. */
    CHECK_EQ_INT(cnd_ca_inspect(&a, (const uint8_t *)"nope", 4), CND_EFORMAT);
    uint8_t *longer = malloc(dn + 1);
    memcpy(longer, der, dn);
    longer[dn] = 0;
    CHECK_EQ_INT(cnd_ca_inspect(&a, longer, dn + 1), CND_EFORMAT);
    CHECK_EQ_INT(cnd_ca_inspect(&a, der, dn - 1), CND_EFORMAT);
    CHECK_EQ_INT(cnd_ca_inspect(&a, der, 0), CND_EFORMAT);
    free(longer);
    /* The CA's end and the CRL's next update (re-signed at T0 + 5 days: valid 30 days). */
    int64_t ca_end = 0, crl_next = 0;
    cnd_ca_trust_dates(t, &ca_end, &crl_next);
    CHECK_EQ_INT(ca_end, T0 + 3650 * DAY);
    CHECK_EQ_INT(crl_next, T0 + CND_CA_CRL_DAYS * DAY);
    cnd_ca_trust_destroy(&t);
    CHECK(cnd_ca_refresh_crl(dir, 0, T0 + 5 * DAY) == 0);
    s_trust(&t, dir);
    cnd_ca_trust_dates(t, &ca_end, &crl_next);
    CHECK_EQ_INT(crl_next, T0 + 35 * DAY);
    cnd_ca_trust_destroy(&t);
    /* Days left, rounded down, negative once passed. */
    CHECK_EQ_INT(cnd_cert_days_left(T0, T0), 0);
    CHECK_EQ_INT(cnd_cert_days_left(T0 + DAY - 1, T0), 0);
    CHECK_EQ_INT(cnd_cert_days_left(T0 + 14 * DAY, T0), 14);
    CHECK_EQ_INT(cnd_cert_days_left(T0 - 1, T0), -1);
    CHECK_EQ_INT(cnd_cert_days_left(T0 - DAY, T0), -1);
    CHECK_EQ_INT(cnd_cert_days_left(T0 - DAY - 1, T0), -2);
    /* Which of two certificates is the later: the end, then (issued within one second) the
     * serial. */
    cnd_cert_info_t x = {.serial = 3, .not_after = T0}, y = {.serial = 4, .not_after = T0};
    CHECK(cnd_cert_newer(&y, &x) && !cnd_cert_newer(&x, &y) && !cnd_cert_newer(&x, &x));
    y.not_after = T0 - 1;
    CHECK(cnd_cert_newer(&x, &y) && !cnd_cert_newer(&y, &x));
    free(pem);
    free(der);
    cnd_identity_destroy(&node);
}

static int s_run(char *out, size_t n, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    return pclose(p);
}

static void test_command(void)
{
    const char *bin = getenv("CND_BIN");
    if (!bin) {
        fprintf(stderr, "CND_BIN not set; skipping the command test\n");
        return;
    }
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd,
             "cd %s && %s ca init --dir cli && %s keygen --out node >/dev/null && "
             "%s ca issue --dir cli --name plant-7 --role device --pubkey node/identity.pub "
             "--days 5 2>&1",
             s_tmp, bin, bin, bin);
    CHECK(s_run(out, sizeof out, cmd) == 0);
    CHECK(strstr(out, "issued serial 1 to plant-7 (role device)") != NULL);
    snprintf(cmd, sizeof cmd,
             "cd %s && %s ca verify --dir cli --cert cli/certs/1.pem --role device 2>&1 && "
             "openssl verify -CAfile cli/ca.crt -crl_check -CRLfile cli/crl.pem cli/certs/1.pem",
             s_tmp, bin);
    CHECK(s_run(out, sizeof out, cmd) == 0);
    CHECK(strstr(out, "ok: cli/certs/1.pem") != NULL);
    CHECK(strstr(out, "cli/certs/1.pem: OK") != NULL); /* OpenSSL agrees */
    snprintf(cmd, sizeof cmd,
             "cd %s && %s ca verify --dir cli --cert cli/certs/1.pem --role site 2>&1", s_tmp, bin);
    CHECK(s_run(out, sizeof out, cmd) != 0);
    CHECK(strstr(out, "wrong role") != NULL);
    snprintf(cmd, sizeof cmd,
             "cd %s && %s ca revoke --dir cli --serial 1 && "
             "%s ca verify --dir cli --cert cli/certs/1.pem 2>&1",
             s_tmp, bin, bin);
    CHECK(s_run(out, sizeof out, cmd) != 0);
    CHECK(strstr(out, "revoked") != NULL);
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl verify -CAfile cli/ca.crt -crl_check -CRLfile cli/crl.pem "
             "cli/certs/1.pem 2>&1",
             s_tmp);
    CHECK(s_run(out, sizeof out, cmd) != 0);
    CHECK(strstr(out, "revoked") != NULL);
    snprintf(cmd, sizeof cmd,
             "cd %s && %s ca list --dir cli && %s ca revoke --dir cli --serial x 2>&1", s_tmp, bin,
             bin);
    CHECK(s_run(out, sizeof out, cmd) != 0);
    CHECK(strstr(out, "revoked   device") != NULL);
    CHECK(strstr(out, "not a serial number") != NULL);
    snprintf(cmd, sizeof cmd, "%s ca --help && %s ca issue --help", bin, bin);
    CHECK(s_run(out, sizeof out, cmd) == 0);
    CHECK(strstr(out, "--pubkey FILE") != NULL);

    /* issue --renew: the successor of a certificate, same name, role and key... */
    snprintf(cmd, sizeof cmd,
             "cd %s && %s ca issue --dir cli --name plant-8 --role site --pubkey node/identity.pub "
             "--days 5 >/dev/null && %s ca issue --dir cli --renew 2 --days 20 --out renewed.pem "
             "2>&1 && %s ca verify --dir cli --cert renewed.pem --role site 2>&1",
             s_tmp, bin, bin, bin);
    CHECK(s_run(out, sizeof out, cmd) == 0);
    CHECK(strstr(out, "issued serial 3 to plant-8 (role site)") != NULL);
    CHECK(strstr(out, "renewal of serial 2; enroll it with: condenser site renew plant-8") != NULL);
    CHECK(strstr(out, "name    plant-8") != NULL);
    /* ...or with a new key: a rotation. */
    snprintf(cmd, sizeof cmd,
             "cd %s && %s keygen --out node2 >/dev/null && %s ca issue --dir cli --renew 3 "
             "--pubkey node2/identity.pub --out rotated.pem 2>&1",
             s_tmp, bin, bin);
    CHECK(s_run(out, sizeof out, cmd) == 0);
    CHECK(strstr(out, "issued serial 4 to plant-8") != NULL);
    CHECK(strstr(out, "key rotation of serial 3") != NULL);
    cnd_ca_entry_t *e = NULL;
    size_t ne = 0;
    char cli_dir[400];
    snprintf(cli_dir, sizeof cli_dir, "%s/cli", s_tmp);
    CHECK(cnd_ca_index_load(&e, &ne, cli_dir) == 0);
    CHECK_EQ_INT(ne, 4);
    if (ne == 4) {
        CHECK(memcmp(e[1].pubkey, e[2].pubkey, 32) == 0 && memcmp(e[2].pubkey, e[3].pubkey, 32));
        CHECK(strcmp(e[3].name, "plant-8") == 0 && strcmp(e[3].role, "site") == 0);
        CHECK_EQ_INT(e[2].not_after - e[2].not_before, 20 * DAY + 300);
    }
    free(e);
    /* Refusals: a revoked serial, an unknown one, another name or role, no serial. */
    const char *bad[][2] = {{"--renew 1", "is revoked"},
                            {"--renew 99", "never issued that serial"},
                            {"--renew 3 --name plant-9", "serial 3 names 'plant-8'"},
                            {"--renew 3 --role device", "serial 3 has role site"},
                            {"--renew x", "--renew 'x' is not a serial number"},
                            {"--name plant-9 --role site", "--pubkey is required"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "cd %s && %s ca issue --dir cli %s 2>&1", s_tmp, bin, bad[i][0]);
        CHECK(s_run(out, sizeof out, cmd) != 0);
        if (!strstr(out, bad[i][1])) fprintf(stderr, "%s: %s", bad[i][0], out);
        CHECK(strstr(out, bad[i][1]) != NULL);
    }
#ifdef CND_TEST_HOOKS
    /* The injected clock (CND_TEST_CLOCK_FILE) moves issuing and OpenSSL's verification alike:
     * 21 days on, the 20-day renewal has expired; the rotated 30-day one has not. */
    snprintf(cmd, sizeof cmd,
             "cd %s && echo 1814400 > clock && CND_TEST_CLOCK_FILE=clock %s ca verify --dir cli "
             "--cert renewed.pem 2>&1",
             s_tmp, bin);
    CHECK(s_run(out, sizeof out, cmd) != 0);
    CHECK(strstr(out, "expired at") != NULL);
    snprintf(cmd, sizeof cmd,
             "cd %s && CND_TEST_CLOCK_FILE=clock %s ca crl --dir cli >/dev/null && "
             "CND_TEST_CLOCK_FILE=clock %s ca verify --dir cli --cert rotated.pem 2>&1 && "
             "%s ca verify --dir cli --cert rotated.pem 2>&1",
             s_tmp, bin, bin, bin);
    CHECK(s_run(out, sizeof out, cmd) != 0); /* now: the CRL re-signed 21 days ahead */
    CHECK(strstr(out, "ok: rotated.pem") != NULL);
    CHECK(strstr(out, "revocation list unusable") != NULL);
#endif
}

int main(void)
{
    snprintf(s_tmp, sizeof s_tmp, "/tmp/cnd_test_ca_XXXXXX");
    CHECK(mkdtemp(s_tmp) != NULL);
    test_ca();
    test_inspect();
    test_command();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_tmp);
    CHECK(system(cmd) == 0);
    return check_result("test_crypto_ca");
}
