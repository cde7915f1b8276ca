/*
 * test_federation_reject.c: what the coordinator refuses, while honest sites keep working.
 *   - an agent whose key is not enrolled, and one whose key was revoked, cannot connect: the
 *     agent stops with "refused" and the coordinator logs reject.connection;
 *   - "mallory", an enrolled site driven by this test over the real transport, sends a
 *     malformed frame, a message before Hello, a replayed message, a message naming another
 *     sender, a message of the wrong phase and one of a future round while it takes part in a
 *     round, and finally a frame over the size limit. Each gets the right Error code back (the
 *     oversized frame just costs mallory its connection), and the job run by three honest
 *     agents completes without mallory (it is selected, then drops out of the round).
 */
#include "check.h"
#include "cert.h"
#include "coord_store.h"
#include "identity.h"
#include "proto.h"
#include "secagg.h"
#include "federation_fixture.h"
#include "transport.h"

#include <sodium.h>
#include <string.h>

typedef struct {
    cnd_client_t *c;
    cnd_identity_t *id;
    uint64_t seq;
} mal_t;

static uint8_t *s_enc(mal_t *m, Condenser__MsgType t, void *p, uint64_t job, uint32_t round,
                      const char *sender, size_t *n)
{
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, t, p, job, round, sender, m->seq++);
    uint8_t *b = NULL;
    CHECK_EQ_INT(cnd_proto_encode(&b, n, &env), 0);
    return b;
}

static void s_send_raw(mal_t *m, const void *b, size_t n)
{
    CHECK_EQ_INT(cnd_client_send(m->c, b, n, 5000), 0);
}

/* Receives until a message of type `want` arrives (others are skipped); NULL on timeout. */
static cnd_proto_msg_t *s_wait(mal_t *m, Condenser__MsgType want, double timeout_s)
{
    double end = fx_now() + timeout_s;
    while (fx_now() < end) {
        uint8_t *b = NULL;
        size_t n = 0;
        if (cnd_client_recv(m->c, &b, &n, 200)) continue;
        cnd_proto_msg_t *msg = NULL;
        int ok = cnd_proto_decode(&msg, NULL, b, n) == 0;
        free(b);
        if (ok && msg->env->type == want) return msg;
        cnd_proto_msg_destroy(&msg);
    }
    return NULL;
}

static void s_expect_error(mal_t *m, Condenser__ErrorCode code, const char *what)
{
    cnd_proto_msg_t *e = s_wait(m, CONDENSER__MSG_TYPE__MSG_ERROR, 10);
    CHECK(e != NULL);
    if (!e) {
        fprintf(stderr, "%s: no error reply\n", what);
        return;
    }
    if ((int)e->env->error->code != (int)code)
        fprintf(stderr, "%s: error %s, expected %s\n", what,
                cnd_proto_error_name(e->env->error->code), cnd_proto_error_name(code));
    CHECK_EQ_INT(e->env->error->code, code);
    cnd_proto_msg_destroy(&e);
}

static void s_agent_refused(fx_fed_t *f, const char *name, int enroll, int revoke)
{
    char dir[400], log[450], kp[450], ini[450], pub[400];
    fx_path(dir, sizeof dir, f->root, name);
    CHECK_EQ_INT(cnd_mkdir_p(dir, 0700), 0);
    fx_path(log, sizeof log, dir, "agent.log");
    const char *kg[] = {"keygen", "--out", dir, NULL};
    CHECK_EQ_INT(fx_run(log, kg), 0);
    fx_path(kp, sizeof kp, dir, "identity.pub");
    char cert[450];
    fx_path(cert, sizeof cert, dir, "site.pem");
    fx_issue(f, log, name, kp, cert); /* a valid certificate: only enrollment is missing */
    if (enroll) {
        const char *en[] = {"site", "enroll", name, "--cert", cert, "--dir", f->coord, NULL};
        CHECK_EQ_INT(fx_run(log, en), 0);
    }
    if (revoke) {
        const char *rv[] = {"site", "revoke", name, "--dir", f->coord, NULL};
        CHECK_EQ_INT(fx_run(log, rv), 0);
    }
    fx_path(ini, sizeof ini, dir, "agent.ini");
    fx_path(pub, sizeof pub, f->coord, "identity.pub");
    FILE *fp = fopen(ini, "w");
    CHECK(fp != NULL);
    if (!fp) return;
    fprintf(fp,
            "[site]\nname = %s\ndata = idx:../site-0/images.idx,../site-0/labels.idx\n"
            "[identity]\nkey = identity.key\ncertificate = site.pem\n[coordinator]\n"
            "endpoint = %s\npublic_key = %s\nca_cert = ../ca/ca.crt\nca_crl = ../ca/crl.pem\n",
            name, f->endpoint, pub);
    fclose(fp);
    const char *args[] = {"agent", "--config", ini, "--max-seconds", "20", NULL};
    int st = fx_wait(fx_spawn(log, NULL, args), 30);
    CHECK_EQ_INT(st, 1);
    /* the agent says why it stopped */
    uint8_t *text = NULL;
    size_t n = 0;
    CHECK_EQ_INT(cnd_file_read(log, 1 << 20, &text, &n), 0);
    CHECK(text && strstr((char *)text, "refused this site's key") != NULL);
    free(text);
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "reject", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    /* mallory: enrolled like any site */
    char mdir[400], mlog[450], mkey[450], mpub[450];
    fx_path(mdir, sizeof mdir, f.root, "mallory");
    fx_path(mlog, sizeof mlog, f.root, "setup.log");
    const char *kg[] = {"keygen", "--out", mdir, NULL};
    CHECK_EQ_INT(fx_run(mlog, kg), 0);
    fx_path(mpub, sizeof mpub, mdir, "identity.pub");
    char mcert[450];
    fx_path(mcert, sizeof mcert, mdir, "site.pem");
    fx_issue(&f, mlog, "mallory", mpub, mcert);
    const char *en[] = {"site", "enroll", "mallory", "--cert", mcert, "--dir", f.coord, NULL};
    CHECK_EQ_INT(fx_run(mlog, en), 0);
    uint8_t *mder = NULL;
    size_t mder_len = 0;
    CHECK_EQ_INT(cnd_cert_read_der(&mder, &mder_len, mcert), 0);
    const char *job[] = {
        "--rounds",       "1",     "--sites",        "4",     "--quorum",   "3",
        "--join-wait-ms", "60000", "--advertise-ms", "3000",  "--share-ms", "10000",
        "--masked-ms",    "15000", "--unmask-ms",    "10000", NULL};
    fx_job_create(&f, job);
    pid_t coord = fx_start_coordinator(&f, NULL);

    /* Unenrolled and revoked keys. */
    s_agent_refused(&f, "eve", 0, 0);
    s_agent_refused(&f, "trudy", 1, 1);

    /* mallory connects over the real transport with its enrolled key. */
    mal_t m;
    memset(&m, 0, sizeof m);
    m.seq = cnd_proto_seq_start();
    fx_path(mkey, sizeof mkey, mdir, "identity.key");
    CHECK_EQ_INT(cnd_identity_load(&m.id, mkey), 0);
    uint8_t cpk[32], csk[32], spk[32], cedpk[32];
    char cpub[400];
    fx_path(cpub, sizeof cpub, f.coord, "identity.pub");
    CHECK_EQ_INT(cnd_pubkey_read(cedpk, cpub), 0);
    CHECK_EQ_INT(cnd_pubkey_to_curve(spk, cedpk), 0);
    CHECK_EQ_INT(cnd_identity_curve_keypair(cpk, csk, m.id), 0);
    cnd_client_opts_t co;
    memset(&co, 0, sizeof co);
    co.endpoint = f.endpoint;
    co.server_key = spk;
    co.public_key = cpk;
    co.secret_key = csk;
    co.max_msg = 4 << 20; /* lets this test send what the coordinator must refuse */
    CHECK_EQ_INT(cnd_client_new(&m.c, &co), 0);

    /* 1. Malformed bytes. */
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    s_send_raw(&m, junk, sizeof junk);
    s_expect_error(&m, CONDENSER__ERROR_CODE__ERR_MALFORMED, "malformed");
    /* 2. A heartbeat before Hello. */
    Condenser__Heartbeat hb;
    condenser__heartbeat__init(&hb);
    size_t n;
    uint8_t *b = s_enc(&m, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &hb, 0, 0, "mallory", &n);
    s_send_raw(&m, b, n);
    free(b);
    s_expect_error(&m, CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED, "before hello");
    /* 3. A valid Hello. */
    Condenser__Hello h;
    condenser__hello__init(&h);
    h.node_name = cnd_proto_str("mallory");
    h.role = CONDENSER__ROLE__ROLE_SITE;
    h.identity_key = cnd_proto_bytes(cnd_identity_pk(m.id), 32);
    h.certificate = cnd_proto_bytes(mder, mder_len);
    h.min_version = h.max_version = 1;
    size_t hn;
    uint8_t *hello = s_enc(&m, CONDENSER__MSG_TYPE__MSG_HELLO, &h, 0, 0, "mallory", &hn);
    s_send_raw(&m, hello, hn);
    cnd_proto_msg_t *ack = s_wait(&m, CONDENSER__MSG_TYPE__MSG_HELLO_ACK, 10);
    CHECK(ack != NULL);
    cnd_proto_msg_destroy(&ack);
    cnd_proto_msg_t *ann = s_wait(&m, CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE, 10);
    CHECK(ann != NULL);
    uint64_t jobid = ann ? ann->env->job_id : 1;
    cnd_proto_msg_destroy(&ann);
    /* 4. The same Hello again, byte for byte: a replay. */
    s_send_raw(&m, hello, hn);
    free(hello);
    s_expect_error(&m, CONDENSER__ERROR_CODE__ERR_REPLAY, "replay");
    /* 5. A message claiming another sender. */
    b = s_enc(&m, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &hb, 0, 0, "site-0", &n);
    s_send_raw(&m, b, n);
    free(b);
    s_expect_error(&m, CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED, "wrong sender");
    /* 6. mallory accepts the job and is selected with the three honest sites. */
    Condenser__JobResponse jr;
    condenser__job_response__init(&jr);
    jr.accept = 1;
    b = s_enc(&m, CONDENSER__MSG_TYPE__MSG_JOB_RESPONSE, &jr, jobid, 0, "mallory", &n);
    s_send_raw(&m, b, n);
    free(b);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent(&f, s, NULL);
    cnd_proto_msg_t *rs = s_wait(&m, CONDENSER__MSG_TYPE__MSG_ROUND_START, 30);
    CHECK(rs != NULL);
    uint32_t round = rs ? rs->env->round : 1;
    uint32_t pid = rs ? rs->env->round_start->participant_id : 1;
    cnd_proto_msg_destroy(&rs);
    /* 7. An UnmaskResponse while the round collects adverts: wrong phase. */
    uint8_t body[64];
    memset(body, 0, sizeof body);
    memcpy(body, "CSA1", 4);
    body[4] = CND_SECAGG_UNMASK;
    body[5] = 1;
    body[13] = (uint8_t)pid;
    memset(body + 17, 0xff, 4);
    Condenser__UnmaskResponse um;
    condenser__unmask_response__init(&um);
    um.participant_id = pid;
    um.unmask = cnd_proto_bytes(body, 40);
    b = s_enc(&m, CONDENSER__MSG_TYPE__MSG_UNMASK_RESPONSE, &um, jobid, round, "mallory", &n);
    s_send_raw(&m, b, n);
    free(b);
    s_expect_error(&m, CONDENSER__ERROR_CODE__ERR_WRONG_PHASE, "wrong phase");
    /* 8. An advert for a round that has not started. */
    body[4] = CND_SECAGG_ADVERT;
    Condenser__AdvertiseKeys ak;
    condenser__advertise_keys__init(&ak);
    ak.participant_id = pid;
    ak.advert = cnd_proto_bytes(body, 40);
    b = s_enc(&m, CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS, &ak, jobid, round + 1, "mallory", &n);
    s_send_raw(&m, b, n);
    free(b);
    s_expect_error(&m, CONDENSER__ERROR_CODE__ERR_STALE_ROUND, "future round");
    /* 9. A forged advert in the right phase: crypto/ refuses it (bad signature). */
    b = s_enc(&m, CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS, &ak, jobid, round, "mallory", &n);
    s_send_raw(&m, b, n);
    free(b);
    cnd_proto_msg_t *e9 = s_wait(&m, CONDENSER__MSG_TYPE__MSG_ERROR, 10);
    CHECK(e9 != NULL);
    if (e9) CHECK(e9->env->error->code != CONDENSER__ERROR_CODE__ERR_UNSPECIFIED);
    cnd_proto_msg_destroy(&e9);
    /* 10. A frame over the coordinator's limit: libzmq drops mallory's connection. */
    size_t big = CND_PROTO_MAX_MSG + 4096;
    uint8_t *huge = calloc(1, big);
    CHECK_EQ_INT(cnd_client_send(m.c, huge, big, 5000), 0);
    free(huge);
    cnd_client_destroy(&m.c);
    cnd_identity_destroy(&m.id);
    free(mder);
    sodium_memzero(csk, sizeof csk);

    /* The honest sites finish the job without mallory. */
    CHECK_EQ_INT(fx_wait(coord, 50), 0);
    for (int s = 0; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 10), 0);
    char state[32] = "";
    CHECK_EQ_INT(fx_job_state(&f, state, sizeof state), 0);
    CHECK(strcmp(state, "completed") == 0);
    cnd_round_rec_t *r = NULL;
    size_t nr = 0;
    CHECK_EQ_INT(fx_rounds(&f, &r, &nr), 0);
    int ok = 0;
    for (size_t i = 0; i < nr; i++)
        if (strcmp(r[i].outcome, "ok") == 0) {
            ok++;
            CHECK_EQ_INT(r[i].survivors, 3);
            for (uint32_t k = 0; k < r[i].n; k++)
                if (strcmp(r[i].sites[k].name, "mallory") == 0)
                    CHECK(!(r[i].sites[k].status & CND_SECAGG_ST_MASKED));
        }
    CHECK_EQ_INT(ok, 1);
    fx_rounds_free(r, nr);

    /* The refusals are in the coordinator's audit log. */
    char db[400], out[400], log[400];
    fx_path(db, sizeof db, f.coord, "coordinator.db");
    fx_path(out, sizeof out, f.root, "audit.jsonl");
    fx_path(log, sizeof log, f.root, "export.log");
    const char *ex[] = {"audit", "export", db, "--format", "jsonl", "--out", out, NULL};
    CHECK_EQ_INT(fx_run(log, ex), 0);
    uint8_t *text = NULL;
    size_t tn = 0;
    CHECK_EQ_INT(cnd_file_read(out, 1 << 26, &text, &tn), 0);
    int conn = 0, msg = 0;
    for (const char *p = (const char *)text; p && (p = strstr(p, "reject.connection")); p++) conn++;
    for (const char *p = (const char *)text; p && (p = strstr(p, "reject.message")); p++) msg++;
    free(text);
    fprintf(stderr, "reject: %d reject.connection and %d reject.message entries\n", conn, msg);
    CHECK(conn >= 2);
    CHECK(msg >= 7);
    const char *ver[] = {"audit", "verify", db, NULL};
    CHECK_EQ_INT(fx_run(log, ver), 0);
    if (check_failures) {
        char p[400];
        fx_path(p, sizeof p, f.root, "coordinator.log");
        fx_dump(p);
    }
    fx_fed_cleanup(&f);
    return check_result("test_federation_reject");
}
