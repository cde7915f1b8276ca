/*
 * node_fixture.h: a node scripted by a test over the real transport, for the federation tests
 * that play a peer the coordinator must cope with (a silent participant, a site revoked while
 * connected, a second connection of one identity, a client that never reads). It holds an
 * enrolled identity's key and certificate and speaks the protocol message by message: the test
 * decides what is sent and when. Everything here is test code; nothing is reachable from the
 * `condenser` command.
 */
#ifndef TEST_NODE_FIXTURE_H
#define TEST_NODE_FIXTURE_H

#include "cert.h"
#include "check.h"
#include "federation_fixture.h"
#include "identity.h"
#include "proto.h"
#include "transport.h"

#include <sodium.h>
#include <sqlite3.h>
#include <string.h>
#include <zmq.h>

typedef struct {
    char name[64];
    int device; /* enrolled with role device (else site) */
    cnd_identity_t *id;
    uint8_t *der; /* its certificate, DER */
    size_t der_len;
    uint8_t cpk[32], csk[32]; /* its CURVE keys */
    uint8_t spk[32];          /* the coordinator's CURVE key */
    uint64_t seq;
    cnd_client_t *c; /* the current connection, or NULL */
} fx_node_t;

/* keygen, `ca issue` and `site enroll` of a node named `name` with role "site" or "device";
 * loads its keys. */
static inline void fx_node_enroll(fx_fed_t *f, fx_node_t *n, const char *name, const char *role)
{
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    n->device = strcmp(role, "device") == 0;
    char dir[400], log[450], pub[450], cert[450], key[450], cpub[400];
    fx_path(dir, sizeof dir, f->root, name);
    fx_path(log, sizeof log, f->root, "setup.log");
    const char *kg[] = {"keygen", "--out", dir, NULL};
    CHECK_EQ_INT(fx_run(log, kg), 0);
    fx_path(pub, sizeof pub, dir, "identity.pub");
    fx_path(cert, sizeof cert, dir, "site.pem");
    char ca[400];
    fx_path(ca, sizeof ca, f->root, "ca");
    const char *is[] = {"ca", "issue",    "--dir", ca,      "--name", name, "--role",
                        role, "--pubkey", pub,     "--out", cert,     NULL};
    CHECK_EQ_INT(fx_run(log, is), 0);
    const char *en[] = {"site",   "enroll", name,    "--cert", cert,
                        "--role", role,     "--dir", f->coord, NULL};
    CHECK_EQ_INT(fx_run(log, en), 0);
    CHECK_EQ_INT(cnd_cert_read_der(&n->der, &n->der_len, cert), 0);
    fx_path(key, sizeof key, dir, "identity.key");
    CHECK_EQ_INT(cnd_identity_load(&n->id, key), 0);
    uint8_t cedpk[32];
    fx_path(cpub, sizeof cpub, f->coord, "identity.pub");
    CHECK_EQ_INT(cnd_pubkey_read(cedpk, cpub), 0);
    CHECK_EQ_INT(cnd_pubkey_to_curve(n->spk, cedpk), 0);
    if (n->id) CHECK_EQ_INT(cnd_identity_curve_keypair(n->cpk, n->csk, n->id), 0);
    n->seq = cnd_proto_seq_start();
}

/* Loads a node's key (dir/identity.key) and certificate (`cert`) without enrolling it; the
 * coordinator's key is read from `coord_pub`. */
static inline void fx_node_load(fx_node_t *n, const char *name, int device, const char *dir,
                                const char *cert, const char *coord_pub)
{
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    n->device = device;
    char key[450];
    snprintf(key, sizeof key, "%s/identity.key", dir);
    CHECK_EQ_INT(cnd_identity_load(&n->id, key), 0);
    CHECK_EQ_INT(cnd_cert_read_der(&n->der, &n->der_len, cert), 0);
    uint8_t cedpk[32];
    CHECK_EQ_INT(cnd_pubkey_read(cedpk, coord_pub), 0);
    CHECK_EQ_INT(cnd_pubkey_to_curve(n->spk, cedpk), 0);
    if (n->id) CHECK_EQ_INT(cnd_identity_curve_keypair(n->cpk, n->csk, n->id), 0);
    n->seq = cnd_proto_seq_start();
}

static inline void fx_node_free(fx_node_t *n)
{
    cnd_client_destroy(&n->c);
    cnd_identity_destroy(&n->id);
    free(n->der);
    sodium_memzero(n->csk, sizeof n->csk);
}

/* A new connection (the previous one, if any, is closed). */
static inline void fx_node_connect(fx_node_t *n, const char *endpoint)
{
    cnd_client_destroy(&n->c);
    cnd_client_opts_t co;
    memset(&co, 0, sizeof co);
    co.endpoint = endpoint;
    co.server_key = n->spk;
    co.public_key = n->cpk;
    co.secret_key = n->csk;
    CHECK_EQ_INT(cnd_client_new(&n->c, &co), 0);
}

static inline uint8_t *fx_node_enc(fx_node_t *n, Condenser__MsgType t, void *p, uint64_t job,
                                   uint32_t round, size_t *len)
{
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, t, p, job, round, n->name, n->seq++);
    uint8_t *b = NULL;
    CHECK_EQ_INT(cnd_proto_encode(&b, len, &env), 0);
    return b;
}

static inline int fx_node_send(fx_node_t *n, Condenser__MsgType t, void *p, uint64_t job,
                               uint32_t round)
{
    size_t len = 0;
    uint8_t *b = fx_node_enc(n, t, p, job, round, &len);
    int rc = b ? cnd_client_send(n->c, b, len, 5000) : -1;
    free(b);
    return rc;
}

static inline uint8_t *fx_node_hello_bytes(fx_node_t *n, size_t *len)
{
    Condenser__Hello h;
    condenser__hello__init(&h);
    h.node_name = cnd_proto_str(n->name);
    h.role = n->device ? CONDENSER__ROLE__ROLE_DEVICE : CONDENSER__ROLE__ROLE_SITE;
    h.identity_key = cnd_proto_bytes(cnd_identity_pk(n->id), 32);
    h.certificate = cnd_proto_bytes(n->der, n->der_len);
    h.min_version = h.max_version = CND_PROTO_VERSION;
    return fx_node_enc(n, CONDENSER__MSG_TYPE__MSG_HELLO, &h, 0, 0, len);
}

static inline int fx_node_hello(fx_node_t *n)
{
    size_t len = 0;
    uint8_t *b = fx_node_hello_bytes(n, &len);
    int rc = b ? cnd_client_send(n->c, b, len, 5000) : -1;
    free(b);
    return rc;
}

/* Receives until a message of type `want` arrives (others are skipped); NULL on timeout. */
static inline cnd_proto_msg_t *fx_node_wait(fx_node_t *n, Condenser__MsgType want, double timeout_s)
{
    double end = fx_now() + timeout_s;
    while (fx_now() < end) {
        uint8_t *b = NULL;
        size_t len = 0;
        if (cnd_client_recv(n->c, &b, &len, 100)) {
            cnd_err_clear();
            continue;
        }
        cnd_proto_msg_t *m = NULL;
        int ok = cnd_proto_decode(&m, NULL, b, len) == 0;
        free(b);
        if (ok && m->env->type == want) return m;
        cnd_proto_msg_destroy(&m);
    }
    return NULL;
}

/* Waits for an Error; returns its code (and its text in text), or -1 on timeout. */
static inline int fx_node_error(fx_node_t *n, double timeout_s, char *text, size_t cap)
{
    cnd_proto_msg_t *m = fx_node_wait(n, CONDENSER__MSG_TYPE__MSG_ERROR, timeout_s);
    if (!m) return -1;
    int code = (int)m->env->error->code;
    if (text && cap) {
        size_t l = m->env->error->text.len < cap - 1 ? m->env->error->text.len : cap - 1;
        memcpy(text, m->env->error->text.data, l);
        text[l] = '\0';
    }
    cnd_proto_msg_destroy(&m);
    return code;
}

/* Runs `condenser job show 1 --dir COORD [--json]` and returns its stdout (caller frees). */
static inline char *fx_job_show(fx_fed_t *f, int json)
{
    char out[400];
    fx_path(out, sizeof out, f->root, json ? "show.json" : "show.txt");
    unlink(out);
    const char *args[] = {"job", "show", "1", "--dir", f->coord, json ? "--json" : NULL, NULL};
    if (fx_wait(fx_spawn(out, NULL, args), 30) != 0) return NULL;
    uint8_t *text = NULL;
    size_t len = 0;
    if (cnd_file_read(out, 1 << 22, &text, &len)) return NULL;
    char *s = realloc(text, len + 1);
    if (!s) {
        free(text);
        return NULL;
    }
    s[len] = '\0';
    return s;
}

/* One integer from the coordinator's database (read-only, through SQLite), or -1. */
static inline int64_t fx_db_int(fx_fed_t *f, const char *sql)
{
    char db[400];
    fx_path(db, sizeof db, f->coord, "coordinator.db");
    sqlite3 *h = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(h, 5000);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return v;
}

/* Starts an agent for site s with a longer life than fx_start_agent's. */
static inline pid_t fx_start_agent_for(fx_fed_t *f, int s, const char *const *env, int max_s)
{
    char log[400], ms[16];
    snprintf(log, sizeof log, "%s/agent.log", f->site_dir[s]);
    snprintf(ms, sizeof ms, "%d", max_s);
    const char *args[] = {"agent", "--config", f->site_ini[s], "--until-done", "--max-seconds",
                          ms,      NULL};
    return fx_spawn(log, env, args);
}

/* Whether the file contains the text. */
static inline int fx_file_has(const char *path, const char *what)
{
    uint8_t *text = NULL;
    size_t n = 0;
    if (cnd_file_read(path, 1 << 24, &text, &n)) return 0;
    char *s = realloc(text, n + 1);
    if (!s) {
        free(text);
        return 0;
    }
    s[n] = '\0';
    int has = strstr(s, what) != NULL;
    free(s);
    return has;
}

#endif
