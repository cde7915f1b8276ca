/* test_round_machine.c: the round state machine (coordinator/coord_round.h) driven through its
 * io seam (cnd_round_io_t) in one process, with no daemon and no network: the test is every
 * site and the clock. What it holds the machine to (coord_round.h and docs/architecture.md
 * "State and restarts"), in terms meant to outlast changes to the SecAgg+ phases themselves:
 *   - start: the round row and round.start are committed before anything is sent; every site
 *     gets RoundStart (its participant index = its place in the sorted list) and then the model;
 *   - a phase closes when every expected site answered or dropped (cnd_round_drop), not at its
 *     deadline, and the next phase's messages go only to the sites that answered, after the new
 *     phase is committed (visible to another connection when they are sent);
 *   - a dropped site's later messages are refused (ERR_REFUSED) and change nothing;
 *   - no phase closes before its deadline (the job's, as cnd_round_time_left says); at the
 *     deadline, too few answers fail the round: RoundEnd FAILED with a reason to every selected
 *     site, outcome failed committed first, a round.end entry naming every site a dropout;
 *   - every site dropping ends the round at once; a cancel sends RoundEnd CANCELLED.
 * Setup goes through the CLI as an operator would (federation_fixture.h: CA, coordinator init,
 * three enrolled sites, job create); the sites' adverts are real SecAgg+ client messages. The
 * secure-aggregation rework may change coord_round.c's phases after advertise; this test uses
 * only the first phase's messages and the documented behaviour above. */
#include "coord_round.h"
#include "clock.h"
#include "digest.h"
#include "json.h"
#include "node_fixture.h"
#include "secagg.h"

#include <stdlib.h>
#include <string.h>

#define N_SITES 3

/* What the io seam saw, in order. */
typedef struct {
    char site[64];
    int kind;                    /* a Condenser__MsgType, or S_COMMIT, or S_OBJECT */
    char phase[16], outcome[16]; /* the round as another connection saw it at that moment */
    int round_end_outcome;       /* RoundEnd: its outcome */
    char reason[256];            /* RoundEnd: its reason */
} s_ev_t;
#define S_COMMIT -1
#define S_OBJECT -2

static cnd_coord_t g_c;
static cnd_cstore_t *g_ro; /* a second, read-only connection: what is committed */
static int64_t g_job;
static s_ev_t g_ev[512];
static int g_nev;
static uint8_t g_params[N_SITES][128]; /* RoundStart's SecAgg+ parameters, per site */
static size_t g_params_len[N_SITES];
static uint32_t g_pid[N_SITES];

static int s_site_index(const char *name)
{
    return strncmp(name, "site-", 5) == 0 ? atoi(name + 5) : -1;
}

static s_ev_t *s_record(const char *site, int kind)
{
    s_ev_t *e = &g_ev[g_nev < 511 ? g_nev++ : 511];
    memset(e, 0, sizeof *e);
    snprintf(e->site, sizeof e->site, "%s", site ? site : "");
    e->kind = kind;
    cnd_round_rec_t *list = NULL;
    size_t n = 0;
    if (cnd_cstore_rounds(g_ro, g_job, &list, &n) == 0 && n) {
        snprintf(e->phase, sizeof e->phase, "%s", list[n - 1].phase);
        snprintf(e->outcome, sizeof e->outcome, "%s", list[n - 1].outcome);
    }
    for (size_t i = 0; i < n; i++) cnd_round_rec_free(&list[i]);
    free(list);
    return e;
}

static int s_send(void *ctx, const char *site, Condenser__MsgType type, void *payload, uint64_t job,
                  uint32_t round)
{
    (void)ctx;
    (void)job;
    (void)round;
    s_ev_t *e = s_record(site, (int)type);
    int i = s_site_index(site);
    if (type == CONDENSER__MSG_TYPE__MSG_ROUND_START && i >= 0 && i < N_SITES) {
        const Condenser__RoundStart *rs = payload;
        g_pid[i] = rs->participant_id;
        g_params_len[i] = rs->secagg_params.len <= sizeof g_params[i] ? rs->secagg_params.len : 0;
        memcpy(g_params[i], rs->secagg_params.data, g_params_len[i]);
    }
    if (type == CONDENSER__MSG_TYPE__MSG_ROUND_END) {
        const Condenser__RoundEnd *re = payload;
        e->round_end_outcome = (int)re->outcome;
        snprintf(e->reason, sizeof e->reason, "%.*s", (int)re->reason.len,
                 re->reason.data ? (const char *)re->reason.data : "");
    }
    return 0;
}

static int s_send_object(void *ctx, const char *site, Condenser__ObjectKind kind,
                         const Condenser__ObjectInfo *info, const uint8_t *data, uint64_t job,
                         uint32_t round)
{
    (void)ctx;
    (void)info;
    (void)data;
    (void)job;
    (void)round;
    CHECK(kind == CONDENSER__OBJECT_KIND__OBJ_MODEL);
    s_record(site, S_OBJECT);
    return 0;
}

static int s_commit(void *ctx)
{
    (void)ctx;
    int rc = cnd_cstore_commit(g_c.store);
    if (!rc) rc = cnd_cstore_begin(g_c.store);
    s_record(NULL, S_COMMIT);
    return rc;
}

static const cnd_round_io_t g_io = {NULL, s_send, s_send_object, s_commit};

/* The events of one kind for one site (NULL: any site) since event `from`. */
static int s_count(int from, const char *site, int kind)
{
    int n = 0;
    for (int i = from; i < g_nev; i++)
        n += g_ev[i].kind == kind && (!site || strcmp(g_ev[i].site, site) == 0);
    return n;
}

static const s_ev_t *s_first(int from, const char *site, int kind)
{
    for (int i = from; i < g_nev; i++)
        if (g_ev[i].kind == kind && (!site || strcmp(g_ev[i].site, site) == 0)) return &g_ev[i];
    return NULL;
}

typedef struct {
    fx_node_t node[N_SITES];
    cnd_round_site_t sites[N_SITES];
    cnd_job_spec_t spec;
} s_world_t;

/* Starts the job's next round with every site; returns it (NULL on failure). */
static cnd_round_t *s_start(s_world_t *w, uint32_t *round_out)
{
    uint32_t round = 0, attempt = 0;
    CHECK_EQ_INT(cnd_cstore_round_next(g_c.store, g_job, &round, &attempt), 0);
    cnd_round_t *r = NULL;
    int rc =
        cnd_round_start(&r, &g_c, &g_io, g_job, &w->spec, round, attempt, w->sites, N_SITES, 0, 1);
    if (rc) fprintf(stderr, "round start: %s\n", cnd_err_detail());
    CHECK_EQ_INT(rc, 0);
    *round_out = round;
    return r;
}

/* Site i's AdvertiseKeys, made by a SecAgg+ client from what its RoundStart carried. */
static int s_advertise(s_world_t *w, cnd_round_t *r, int i, uint32_t round, cnd_proto_reject_t *rej)
{
    cnd_secagg_params_t sp;
    cnd_secagg_member_t roster[N_SITES]; /* as RoundStart names them: key and certificate */
    for (int k = 0; k < N_SITES; k++) {
        memcpy(roster[k].id_pk, w->sites[k].ed_pk, 32);
        cnd_sha256(roster[k].cert_sha256, w->sites[k].cert, w->sites[k].cert_len);
    }
    cnd_secagg_client_t *sc = NULL;
    int rc = cnd_secagg_params_decode(&sp, g_params[i], g_params_len[i]);
    if (!rc) rc = cnd_secagg_client_new(&sc, &sp, g_pid[i], w->node[i].id, roster);
    cnd_buf_t b;
    cnd_buf_init(&b);
    if (!rc) rc = cnd_secagg_client_advertise(sc, &b);
    CHECK_EQ_INT(rc, 0);
    Condenser__AdvertiseKeys m;
    condenser__advertise_keys__init(&m);
    m.participant_id = g_pid[i];
    m.advert = cnd_proto_bytes(b.data, b.len);
    Condenser__Envelope env;
    condenser__envelope__init(&env);
    env.version = 1;
    env.type = CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS;
    env.job_id = (uint64_t)g_job;
    env.round = round;
    env.sender = cnd_proto_str(w->sites[i].name);
    env.seq = 1;
    env.payload_case = CONDENSER__ENVELOPE__PAYLOAD_ADVERTISE_KEYS;
    env.advertise_keys = &m;
    memset(rej, 0, sizeof *rej);
    if (!rc)
        rc = cnd_round_on_message(r, (uint32_t)cnd_round_site_index(r, w->sites[i].name), &env,
                                  b.len + 64, rej);
    cnd_buf_free(&b);
    cnd_secagg_client_destroy(&sc);
    return rc;
}

/* The round.end entry of round `round`: its status and the number of dropouts it names. */
static void s_round_end_entry(uint32_t round, char *status, size_t cap, int *dropouts)
{
    char subj[32];
    snprintf(subj, sizeof subj, "round %u", round);
    status[0] = 0;
    *dropouts = -1;
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(cnd_audit_db(g_c.audit),
                             "SELECT entry FROM audit_entry WHERE action = 'round.end' AND "
                             "subject = ? ORDER BY seq DESC LIMIT 1",
                             -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, subj, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *e = (const char *)sqlite3_column_text(st, 0);
        cnd_json_t *v = NULL;
        if (cnd_json_parse(&v, e, strlen(e)) == 0) {
            const cnd_json_t *d = cnd_json_get(v, "details");
            const char *s = d ? cnd_json_str(cnd_json_get(d, "status")) : NULL;
            const cnd_json_t *dr = d ? cnd_json_get(d, "dropouts") : NULL;
            snprintf(status, cap, "%s", s ? s : "");
            if (dr) *dropouts = (int)dr->n;
        }
        cnd_json_free(&v);
    }
    sqlite3_finalize(st);
}

/* Start: committed first, then RoundStart and the model to every site, in index order. */
static void test_start(s_world_t *w)
{
    int from = g_nev;
    uint32_t round;
    cnd_round_t *r = s_start(w, &round);
    if (!r) return;
    const s_ev_t *c = s_first(from, NULL, S_COMMIT);
    const s_ev_t *s0 = s_first(from, NULL, CONDENSER__MSG_TYPE__MSG_ROUND_START);
    CHECK(c && s0 && c < s0);
    for (int i = 0; i < N_SITES; i++) {
        const s_ev_t *rs = s_first(from, w->sites[i].name, CONDENSER__MSG_TYPE__MSG_ROUND_START);
        const s_ev_t *ob = s_first(from, w->sites[i].name, S_OBJECT);
        CHECK(rs && ob && rs < ob);
        CHECK(rs && strcmp(rs->phase, "advertise") == 0 && rs->outcome[0] == 0);
        CHECK_EQ_INT(g_pid[i], i);
        CHECK_EQ_INT(cnd_round_site_index(r, w->sites[i].name), i);
    }
    CHECK_EQ_INT(cnd_round_site_index(r, "not-a-site"), -1);
    CHECK_EQ_INT(cnd_round_number(r), round);
    cnd_round_cancel(r, "test over");
    cnd_round_destroy(&r);
}

/* Two sites advertise, the third's session ends: the neighbour graph is drawn from every
 * participant's keys, so the attempt ends at once as "retry" (the job runs the round again
 * with fresh keys and without the site), committed before its RoundEnd goes out; no KeyRoster
 * is sent, and the dropped site's late advert is refused. */
static void test_dropout_closes_phase(s_world_t *w)
{
    int from = g_nev;
    uint32_t round;
    cnd_round_t *r = s_start(w, &round);
    if (!r) return;
    double now = cnd_now();
    cnd_proto_reject_t rej;
    CHECK_EQ_INT(s_advertise(w, r, 0, round, &rej), 0);
    CHECK_EQ_INT(s_advertise(w, r, 1, round, &rej), 0);
    CHECK_EQ_INT(cnd_round_tick(r, now), 0);
    int before = g_nev;
    CHECK_EQ_INT(s_count(from, NULL, CONDENSER__MSG_TYPE__MSG_KEY_ROSTER), 0);
    cnd_round_drop(r, 2, "connection lost");
    CHECK_EQ_INT(s_count(before, NULL, CONDENSER__MSG_TYPE__MSG_KEY_ROSTER), 0);
    for (int i = 0; i < 2; i++) {
        const s_ev_t *re = s_first(before, w->sites[i].name, CONDENSER__MSG_TYPE__MSG_ROUND_END);
        CHECK(re && re->round_end_outcome == CONDENSER__ROUND_OUTCOME__OUTCOME_RETRY);
        CHECK(re && strcmp(re->outcome, "retry") == 0 && strstr(re->reason, "advertise") != NULL);
        CHECK(s_first(before, NULL, S_COMMIT) && s_first(before, NULL, S_COMMIT) < re);
    }
    /* the dropped site's advert: refused, nothing changes */
    int n_ev = g_nev;
    CHECK(s_advertise(w, r, 2, round, &rej) != 0);
    CHECK_EQ_INT(g_nev, n_ev);
    int64_t version = 0;
    CHECK_EQ_INT(cnd_round_result(r, &version), 0);
    fprintf(stderr, "round %u: %s\n", round, cnd_round_reason(r));
    char status[16];
    int dropouts;
    s_round_end_entry(round, status, sizeof status, &dropouts);
    CHECK(strcmp(status, "failed") == 0); /* the attempt's entry; the round record says retry */
    CHECK_EQ_INT(dropouts, N_SITES);      /* nobody's masked input is in an aggregate */
    cnd_round_destroy(&r);
}

/* Nobody advertises: nothing happens before the advertise deadline (the job's); at it the
 * attempt ends for want of keys, to be retried (attempts below CND_ROUND_MAX_ATTEMPTS). */
static void test_deadline_quorum(s_world_t *w)
{
    uint32_t round;
    cnd_round_t *r = s_start(w, &round);
    if (!r) return;
    double t0 = cnd_now(), deadline = w->spec.deadline_ms[0] / 1e3;
    double left = cnd_round_time_left(r, t0);
    CHECK(left > deadline - 5 && left <= deadline + 0.001);
    CHECK_EQ_INT(cnd_round_tick(r, t0 + left - 0.5), 0);
    CHECK_EQ_INT(cnd_round_time_left(r, t0 + left + 5) == 0, 1);
    int before = g_nev;
    CHECK_EQ_INT(cnd_round_tick(r, t0 + left + 0.1), 1);
    CHECK_EQ_INT(s_count(before, NULL, CONDENSER__MSG_TYPE__MSG_KEY_ROSTER), 0);
    CHECK_EQ_INT(s_count(before, NULL, CONDENSER__MSG_TYPE__MSG_ROUND_END), N_SITES);
    const s_ev_t *re = s_first(before, NULL, CONDENSER__MSG_TYPE__MSG_ROUND_END);
    CHECK(re && re->round_end_outcome == CONDENSER__ROUND_OUTCOME__OUTCOME_RETRY &&
          strcmp(re->outcome, "retry") == 0);
    int64_t version = 0;
    CHECK_EQ_INT(cnd_round_result(r, &version), 0);
    /* an ended round refuses what still arrives */
    cnd_proto_reject_t rej;
    CHECK_EQ_INT(s_advertise(w, r, 0, round, &rej), CND_ESTATE);
    char status[16];
    int dropouts;
    s_round_end_entry(round, status, sizeof status, &dropouts);
    CHECK(strcmp(status, "failed") == 0);
    CHECK_EQ_INT(dropouts, N_SITES);
    cnd_round_destroy(&r);
}

/* Every site's session ends: the round is over at once, long before any deadline. */
static void test_all_drop(s_world_t *w)
{
    uint32_t round;
    cnd_round_t *r = s_start(w, &round);
    if (!r) return;
    int before = g_nev;
    for (uint32_t i = 0; i < N_SITES; i++) cnd_round_drop(r, i, "connection lost");
    cnd_round_drop(r, 0, "again"); /* a second drop of one site changes nothing */
    CHECK_EQ_INT(cnd_round_tick(r, cnd_now()), 1);
    CHECK_EQ_INT(s_count(before, NULL, CONDENSER__MSG_TYPE__MSG_ROUND_END), N_SITES);
    int64_t version = 0;
    CHECK_EQ_INT(cnd_round_result(r, &version), 0);
    cnd_round_destroy(&r);
}

/* A cancel: RoundEnd CANCELLED to every site, the outcome committed first. */
static void test_cancel(s_world_t *w)
{
    uint32_t round;
    cnd_round_t *r = s_start(w, &round);
    if (!r) return;
    int before = g_nev;
    cnd_round_cancel(r, "cancelled by the operator");
    CHECK_EQ_INT(cnd_round_tick(r, cnd_now()), 1);
    CHECK_EQ_INT(s_count(before, NULL, CONDENSER__MSG_TYPE__MSG_ROUND_END), N_SITES);
    for (int i = before; i < g_nev; i++)
        if (g_ev[i].kind == CONDENSER__MSG_TYPE__MSG_ROUND_END) {
            CHECK_EQ_INT(g_ev[i].round_end_outcome, CONDENSER__ROUND_OUTCOME__OUTCOME_CANCELLED);
            CHECK(strcmp(g_ev[i].outcome, "cancelled") == 0);
            CHECK(strstr(g_ev[i].reason, "cancelled by the operator") != NULL);
        }
    cnd_round_destroy(&r);
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "round", N_SITES);
    fx_fed_setup(&f, 16, NULL, 0);
    fx_job_create(&f, NULL);
    static s_world_t w;
    char pub[400];
    fx_path(pub, sizeof pub, f.coord, "identity.pub");
    for (int i = 0; i < N_SITES; i++) {
        char cert[450];
        snprintf(cert, sizeof cert, "%s/site.pem", f.site_dir[i]);
        fx_node_load(&w.node[i], f.site_name[i], 0, f.site_dir[i], cert, pub);
        cnd_round_site_t *s = &w.sites[i];
        snprintf(s->name, sizeof s->name, "%s", f.site_name[i]);
        if (w.node[i].id) {
            memcpy(s->ed_pk, cnd_identity_pk(w.node[i].id), 32);
            cnd_pubkey_fingerprint(s->fpr, s->ed_pk);
        }
        s->cert = w.node[i].der;
        s->cert_len = w.node[i].der_len;
    }
    int rc = cnd_coord_open(&g_c, f.coord, 1);
    CHECK_EQ_INT(rc, 0);
    char db[700];
    snprintf(db, sizeof db, "%s/%s", f.coord, CND_COORD_DB_FILE);
    CHECK_EQ_INT(cnd_cstore_open_readonly(&g_ro, db), 0);
    cnd_job_rec_t jr;
    memset(&jr, 0, sizeof jr);
    if (!rc && cnd_cstore_job_next(g_c.store, &g_job) == 0 &&
        cnd_cstore_job_get(g_c.store, g_job, &jr) == 0 &&
        cnd_job_from_json(&w.spec, jr.spec_json) == 0 && g_ro && check_failures == 0) {
        CHECK_EQ_INT(cnd_cstore_begin(g_c.store), 0);
        test_start(&w);
        test_dropout_closes_phase(&w);
        test_deadline_quorum(&w);
        test_all_drop(&w);
        test_cancel(&w);
        CHECK_EQ_INT(cnd_cstore_commit(g_c.store), 0);
    } else {
        fprintf(stderr, "setup failed: %s\n", cnd_err_detail());
        CHECK(0);
    }
    cnd_job_rec_free(&jr);
    cnd_cstore_close(&g_ro);
    cnd_coord_close(&g_c);
    for (int i = 0; i < N_SITES; i++) fx_node_free(&w.node[i]);
    fx_fed_cleanup(&f);
    return check_result("test_round_machine");
}
