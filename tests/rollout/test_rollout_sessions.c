/*
 * test_rollout_sessions.c: `condenser rollout serve` (a real process on loopback, serving a
 * coordinator directory with a federation CA) and devices scripted by this test:
 *   - a device's Hello with its own certificate opens a session (HelloAck);
 *   - a second connection of the same device that never said Hello is refused ("send hello
 *     first"), although the device has a session on its first connection;
 *   - a device presenting another device's certificate, or a certificate from another CA, is
 *     refused;
 *   - a device revoked in the fleet registry while connected is told "session ended: revoked"
 *     within seconds, and its connection's later frames are refused;
 *   - a device whose certificate the CA revokes while connected is told "session ended:
 *     certificate" when the new CRL appears;
 *   - both ends are in the audit log (session.end) and the log verifies.
 */
#include "check.h"
#include "fleet_registry.h"
#include "federation_fixture.h"
#include "node_fixture.h"

#include <sqlite3.h>
#include <string.h>

/* keygen + `ca issue --role device` (from CA dir `ca`) + `rollout enroll`; writes dir/device.pem.
 */
static void s_device(fx_fed_t *f, const char *ca, const char *name, int enroll, char *dir,
                     size_t cap)
{
    char log[400], pub[450], cert[450];
    fx_path(log, sizeof log, f->root, "setup.log");
    snprintf(dir, cap, "%s/%s", f->root, name);
    const char *kg[] = {"keygen", "--out", dir, NULL};
    CHECK_EQ_INT(fx_run(log, kg), 0);
    snprintf(pub, sizeof pub, "%s/identity.pub", dir);
    snprintf(cert, sizeof cert, "%s/device.pem", dir);
    const char *is[] = {"ca",     "issue",    "--dir", ca,      "--name", name, "--role",
                        "device", "--pubkey", pub,     "--out", cert,     NULL};
    CHECK_EQ_INT(fx_run(log, is), 0);
    if (!enroll) return;
    const char *en[] = {"rollout", "enroll", name, "--key", pub, "--dir", f->coord, NULL};
    CHECK_EQ_INT(fx_run(log, en), 0);
}

static int s_hello_ack(fx_node_t *n)
{
    if (fx_node_hello(n)) return 0;
    cnd_proto_msg_t *m = fx_node_wait(n, CONDENSER__MSG_TYPE__MSG_HELLO_ACK, 10);
    int ok = m != NULL;
    cnd_proto_msg_destroy(&m);
    return ok;
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "rollout-sessions", 0);
    char log[400], ca[400], ca2[400], cpub[400];
    fx_path(log, sizeof log, f.root, "setup.log");
    fx_path(ca, sizeof ca, f.root, "ca");
    fx_path(ca2, sizeof ca2, f.root, "other-ca");
    fx_path(cpub, sizeof cpub, f.coord, "identity.pub");
    const char *cai[] = {"ca", "init", "--dir", ca, "--name", "fleet", NULL};
    CHECK_EQ_INT(fx_run(log, cai), 0);
    const char *cai2[] = {"ca", "init", "--dir", ca2, "--name", "someone else", NULL};
    CHECK_EQ_INT(fx_run(log, cai2), 0);
    const char *init[] = {"coordinator", "init", "--dir", f.coord, "--ca", ca, NULL};
    CHECK_EQ_INT(fx_run(log, init), 0);
    char da[400], db_[400], dc[400], cert[450];
    s_device(&f, ca, "dev-a", 1, da, sizeof da);
    s_device(&f, ca, "dev-b", 1, db_, sizeof db_);
    s_device(&f, ca, "dev-c", 1, dc, sizeof dc);

    char slog[400];
    fx_path(slog, sizeof slog, f.root, "serve.log");
    const char *sargs[] = {"rollout", "serve", "--dir", f.coord, "--endpoint", f.endpoint, NULL};
    pid_t serve = fx_spawn(slog, NULL, sargs);

    /* dev-a: a session on its first connection. */
    fx_node_t a;
    snprintf(cert, sizeof cert, "%s/device.pem", da);
    fx_node_load(&a, "dev-a", 1, da, cert, cpub);
    fx_node_connect(&a, f.endpoint);
    CHECK(s_hello_ack(&a));
    cnd_client_t *a_first = a.c;
    a.c = NULL;
    /* A second connection of dev-a that never said Hello. */
    fx_node_connect(&a, f.endpoint);
    Condenser__Heartbeat hb;
    condenser__heartbeat__init(&hb);
    CHECK_EQ_INT(fx_node_send(&a, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &hb, 0, 0), 0);
    char text[600] = "";
    CHECK_EQ_INT(fx_node_error(&a, 10, text, sizeof text), CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    CHECK(strstr(text, "send hello first") != NULL);
    cnd_client_destroy(&a.c);
    a.c = a_first;

    /* dev-b presents dev-a's certificate; dev-c one from another CA (same name, its own key). */
    fx_node_t b, c;
    snprintf(cert, sizeof cert, "%s/device.pem", da);
    fx_node_load(&b, "dev-b", 1, db_, cert, cpub);
    fx_node_connect(&b, f.endpoint);
    CHECK_EQ_INT(fx_node_hello(&b), 0);
    CHECK_EQ_INT(fx_node_error(&b, 10, text, sizeof text), CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    CHECK(strstr(text, "certificate") != NULL);
    fprintf(stderr, "sessions: another device's certificate: %s\n", text);
    {
        /* a certificate for dev-c's own key and name, but from another CA */
        char pub[450], other[450];
        snprintf(pub, sizeof pub, "%s/identity.pub", dc);
        snprintf(other, sizeof other, "%s/other.pem", dc);
        const char *is[] = {"ca",     "issue",    "--dir", ca2,     "--name", "dev-c", "--role",
                            "device", "--pubkey", pub,     "--out", other,    NULL};
        CHECK_EQ_INT(fx_run(log, is), 0);
        fx_node_load(&c, "dev-c", 1, dc, other, cpub);
    }
    fx_node_connect(&c, f.endpoint);
    CHECK_EQ_INT(fx_node_hello(&c), 0);
    CHECK_EQ_INT(fx_node_error(&c, 10, text, sizeof text), CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    fprintf(stderr, "sessions: another CA's certificate: %s\n", text);
    fx_node_free(&c);
    fx_node_free(&b);

    /* dev-b with its own certificate: a session; then the CA revokes it. */
    snprintf(cert, sizeof cert, "%s/device.pem", db_);
    fx_node_load(&b, "dev-b", 1, db_, cert, cpub);
    fx_node_connect(&b, f.endpoint);
    CHECK(s_hello_ack(&b));
    char cacrt[450], crl[450];
    snprintf(cacrt, sizeof cacrt, "%s/ca.crt", ca);
    snprintf(crl, sizeof crl, "%s/crl.pem", ca);
    cnd_cert_info_t ci;
    CHECK_EQ_INT(
        cnd_cert_check(&ci, cacrt, crl, b.der, b.der_len, "device", "dev-b", (int64_t)time(NULL)),
        0);
    char serial[32];
    snprintf(serial, sizeof serial, "%llu", (unsigned long long)ci.serial);
    const char *rv[] = {"ca", "revoke", "--dir", ca, "--serial", serial, NULL};
    double t0 = fx_now();
    CHECK_EQ_INT(fx_run(log, rv), 0);
    CHECK_EQ_INT(fx_node_error(&b, 15, text, sizeof text), CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    CHECK(strncmp(text, "session ended: certificate", 26) == 0);
    fprintf(stderr, "sessions: CA revocation seen after %.1f s: %s\n", fx_now() - t0, text);

    /* dev-a is revoked in the fleet registry while connected. */
    char dbp[400];
    fx_path(dbp, sizeof dbp, f.coord, "coordinator.db");
    sqlite3 *h = NULL;
    CHECK(sqlite3_open_v2(dbp, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    sqlite3_busy_timeout(h, 10000);
    t0 = fx_now();
    CHECK_EQ_INT(cnd_fleet_revoke(h, "dev-a"), 0);
    sqlite3_close(h);
    CHECK_EQ_INT(fx_node_error(&a, 15, text, sizeof text), CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    CHECK(strncmp(text, "session ended: revoked", 22) == 0);
    fprintf(stderr, "sessions: registry revocation seen after %.1f s\n", fx_now() - t0);
    /* what it sends afterwards is refused, not taken */
    CHECK_EQ_INT(fx_node_send(&a, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &hb, 0, 0), 0);
    CHECK_EQ_INT(fx_node_error(&a, 10, text, sizeof text), CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    fx_node_free(&a);
    fx_node_free(&b);

    kill(serve, SIGTERM);
    CHECK_EQ_INT(fx_wait(serve, 20), 0);
    CHECK(fx_db_int(&f,
                    "SELECT count(*) FROM audit_entry WHERE action = 'session.end' AND"
                    " json_extract(entry, '$.details.reason') IN ('revoked', 'certificate')") == 2);
    char vlog[400];
    fx_path(vlog, sizeof vlog, f.root, "verify.log");
    const char *ver[] = {"audit", "verify", dbp, NULL};
    CHECK_EQ_INT(fx_run(vlog, ver), 0);
    if (check_failures) fx_dump(slog);
    fx_fed_cleanup(&f);
    return check_result("test_rollout_sessions");
}
