/*
 * test_federation_flood.c: one misbehaving enrolled peer costs the others nothing, and its
 * refusals cost the database a bounded number of entries. Real processes on loopback (a
 * coordinator and three site agents running a 3-round job whose quorum is all three, so a
 * round that loses an honest site fails) and peers scripted by this test:
 *   - mallory opens a second connection and, without saying Hello on it, sends a Heartbeat and a
 *     JobResponse: both refused (ERR_UNAUTHORIZED) although mallory has a session on its first
 *     connection, and the job response is not taken;
 *   - a raw libzmq client with mallory's enrolled key that never reads (receive queue of one
 *     message, small socket buffer) says Hello 400 times and then sends 50,000 frames of random
 *     bytes, then a frame now and then (so that its connection stays up at the ZMTP level). The
 *     coordinator's queue towards it fills with the job's 36 MB teacher; it is dropped as a slow
 *     reader (its queue does not move for 10 s: session.end "slow reader") and its frames are
 *     discarded unread;
 *   - meanwhile "prober", an enrolled device (devices get no job, so no teacher), measures
 *     Hello -> HelloAck on fresh connections:
 *     the figures are printed (the report, not an assertion: timing on a shared machine).
 * The flood runs while the job waits for its sites, so that the prober's figures and the
 * database's growth are the flood's alone; then the three agents run the job next to the muted
 * flooder. Asserted: every round completes with all three honest sites; the flood adds at most a
 * few dozen reject entries (one per reason class and window, plus summaries), not one per frame;
 * the flooder is dropped; the audit log verifies. Printed: database growth per
 * flood frame, the coordinator's resident memory, the prober's round trips.
 */
#include "check.h"
#include "coord_store.h"
#include "federation_fixture.h"
#include "node_fixture.h"

#include <string.h>

/* The size of the flood and of the teacher can be changed for measurements (for instance of an
 * older coordinator, which blocks on a full queue): CND_TEST_FLOOD_HELLOS (400),
 * CND_TEST_FLOOD_FRAMES (50,000), CND_TEST_FLOOD_WIDTH (the teacher's hidden layer, 131,072). */
static int s_env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long s_rss_kb(pid_t pid)
{
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *fp = fopen(p, "r");
    long kb = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (fp) fclose(fp);
    return kb;
}

/* Whether the coordinator's log says it dropped the flooder, the last session mallory opened:
 * 1 as a slow reader, 2 because its connection closed, 0 not (yet). */
static int s_flooder_dropped(const char *clog)
{
    uint8_t *t = NULL;
    size_t n = 0;
    if (cnd_file_read(clog, 1 << 24, &t, &n)) return 0;
    char *s = realloc(t, n + 1);
    if (!s) {
        free(t);
        return 0;
    }
    s[n] = '\0';
    const char *last = NULL, *p = s;
    while ((p = strstr(p, "mallory said hello (session "))) last = p++;
    int r = 0;
    unsigned id = 0;
    if (last && sscanf(last, "mallory said hello (session %u", &id) == 1) {
        char slow[96], lost[96];
        snprintf(slow, sizeof slow, "mallory: session %u from 127.0.0.1 ended: slow reader", id);
        snprintf(lost, sizeof lost, "mallory: session %u from 127.0.0.1 ended: connection lost",
                 id);
        r = strstr(s, slow) ? 1 : strstr(s, lost) ? 2 : 0;
    }
    free(s);
    return r;
}

/* Hello -> HelloAck on a fresh connection, in ms (-1 when no answer within 10 s). */
static double s_probe(fx_node_t *p, const char *ep)
{
    fx_node_connect(p, ep);
    cnd_client_state_t st;
    double end = fx_now() + 10;
    do {
        cnd_client_state(p->c, &st);
        if (!st.connected) fx_sleep_ms(5);
    } while (!st.connected && fx_now() < end);
    double t0 = fx_now();
    if (fx_node_hello(p)) return -1;
    cnd_proto_msg_t *m = fx_node_wait(p, CONDENSER__MSG_TYPE__MSG_HELLO_ACK, 10);
    double ms = m ? (fx_now() - t0) * 1e3 : -1;
    cnd_proto_msg_destroy(&m);
    return ms;
}

int main(void)
{
    const int hellos = s_env_int("CND_TEST_FLOOD_HELLOS", 400);
    const int frames = s_env_int("CND_TEST_FLOOD_FRAMES", 50000);
    const int width = s_env_int("CND_TEST_FLOOD_WIDTH", 131072);
    fx_fed_t f;
    fx_fed_init(&f, "flood", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    fx_node_t mal, prober;
    fx_node_enroll(&f, &mal, "mallory", "site");
    fx_node_enroll(&f, &prober, "prober", "device"); /* no job, no teacher */
    /* a 36 MB teacher (136 chunks): more than a never-reading client's queues hold */
    char teacher[400], spec[64];
    fx_path(teacher, sizeof teacher, f.root, "teacher.cnd");
    snprintf(spec, sizeof spec, "flatten dense(%d) relu dense(4)", width);
    cnd_model_t *t = NULL;
    CHECK_EQ_INT(cnd_model_new(&t, spec, (cnd_shape_t){1, 8, 8}, 7), 0);
    if (t) {
        t->norm_mean[0] = 100.0f;
        t->norm_std[0] = 60.0f;
        CHECK_EQ_INT(cnd_model_save(t, teacher), 0);
    }
    cnd_model_destroy(&t);
    const char *job[] = {
        "--rounds",       "3",     "--sites",        "3",     "--quorum",   "3",
        "--join-wait-ms", "60000", "--advertise-ms", "30000", "--share-ms", "30000",
        "--masked-ms",    "60000", "--unmask-ms",    "30000", NULL};
    fx_job_create(&f, job);
    pid_t coord = fx_start_coordinator(&f, NULL);

    /* Baseline: the prober's round trip on an idle coordinator (after one to warm up). */
    double base[5];
    CHECK(s_probe(&prober, f.endpoint) >= 0);
    for (int i = 0; i < 5; i++) {
        base[i] = s_probe(&prober, f.endpoint);
        CHECK(base[i] >= 0);
    }
    qsort(base, 5, sizeof *base, s_cmp_double);

    /* A connection that never said Hello is refused, whatever the identity's other one did. */
    fx_node_connect(&mal, f.endpoint);
    CHECK_EQ_INT(fx_node_hello(&mal), 0);
    cnd_proto_msg_t *m = fx_node_wait(&mal, CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE, 20);
    CHECK(m != NULL);
    uint64_t jobid = m ? m->env->job_id : 1;
    cnd_proto_msg_destroy(&m);
    cnd_client_t *first = mal.c;
    mal.c = NULL;
    fx_node_connect(&mal, f.endpoint);
    Condenser__Heartbeat hb;
    condenser__heartbeat__init(&hb);
    CHECK_EQ_INT(fx_node_send(&mal, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &hb, 0, 0), 0);
    char text[400] = "";
    CHECK_EQ_INT(fx_node_error(&mal, 10, text, sizeof text),
                 CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    CHECK(strstr(text, "hello first") != NULL);
    Condenser__JobResponse jr;
    condenser__job_response__init(&jr);
    jr.accept = 1;
    CHECK_EQ_INT(fx_node_send(&mal, CONDENSER__MSG_TYPE__MSG_JOB_RESPONSE, &jr, jobid, 0), 0);
    CHECK_EQ_INT(fx_node_error(&mal, 10, text, sizeof text),
                 CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    cnd_client_destroy(&mal.c);
    cnd_client_destroy(&first);
    char clog[400];
    fx_path(clog, sizeof clog, f.root, "coordinator.log");
    CHECK(!fx_file_has(clog, "mallory accepted job"));

    const char *used = "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(),"
                       " pragma_freelist_count(), pragma_page_size()";
    int64_t size0 = fx_db_int(&f, used);
    int64_t rej0 = fx_db_int(&f, "SELECT count(*) FROM audit_entry WHERE action LIKE 'reject.%'");
    long rss0 = s_rss_kb(coord);

    /* The flooder: mallory's key, never reads, receives at most one message into its queue. */
    void *ctx = zmq_ctx_new();
    void *fl = zmq_socket(ctx, ZMQ_DEALER);
    int one = 1, zero = 0, small = 4096, big = 1 << 20;
    zmq_setsockopt(fl, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(fl, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt(fl, ZMQ_RCVBUF, &small, sizeof small);
    zmq_setsockopt(fl, ZMQ_SNDHWM, &big, sizeof big);
    zmq_setsockopt(fl, ZMQ_CURVE_SERVERKEY, mal.spk, 32);
    zmq_setsockopt(fl, ZMQ_CURVE_PUBLICKEY, mal.cpk, 32);
    zmq_setsockopt(fl, ZMQ_CURVE_SECRETKEY, mal.csk, 32);
    CHECK(zmq_connect(fl, f.endpoint) == 0);
    double t_flood = fx_now();
    for (int i = 0; i < hellos; i++) {
        size_t len = 0;
        uint8_t *b = fx_node_hello_bytes(&mal, &len);
        CHECK(b && zmq_send(fl, b, len, 0) == (int)len);
        free(b);
    }
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 99);
    uint8_t junk[512];
    double rtt[64];
    int probes = 0, failed = 0;
    for (int i = 0; i < frames; i++) {
        size_t len = 16 + (size_t)cnd_rng_below(&rng, sizeof junk - 16);
        for (size_t k = 0; k < len; k++) junk[k] = (uint8_t)cnd_rng_below(&rng, 256);
        if (zmq_send(fl, junk, len, 0) != (int)len) failed++;
        if (i % (frames / 10 + 1) == frames / 10 && probes < 64) {
            rtt[probes] = s_probe(&prober, f.endpoint);
            if (rtt[probes] < 0) failed++;
            probes++;
        }
    }
    double t_sent = fx_now() - t_flood;
    CHECK_EQ_INT(failed, 0);
    /* Keep probing until the coordinator has dropped the flooder. A client that reads nothing
     * also stops answering ZMTP pings, and libzmq would close a silent one after the 3 s
     * heartbeat timeout; this one keeps sending a frame now and then, so only the coordinator's
     * own rule can drop it: its queue has not moved for 10 s (a slow reader). */
    long rss_max = rss0;
    int dropped = 0;
    double end = fx_now() + 90;
    while (fx_now() < end) {
        (void)zmq_send(fl, junk, 64, ZMQ_DONTWAIT);
        if (probes < 64) {
            rtt[probes] = s_probe(&prober, f.endpoint);
            if (rtt[probes] >= 0) probes++;
        }
        long rss = s_rss_kb(coord);
        if (rss > rss_max) rss_max = rss;
        if ((dropped = s_flooder_dropped(clog)) != 0) break;
        fx_sleep_ms(300);
    }
    double t_slow = fx_now() - t_flood;
    CHECK_EQ_INT(dropped, 1);
    qsort(rtt, (size_t)probes, sizeof *rtt, s_cmp_double);
    fprintf(stderr,
            "flood: %d Hellos and %d random frames sent in %.1f s; flooder dropped (%s) %.1f s "
            "after it connected; prober Hello->HelloAck: idle median %.1f ms (max %.1f), during "
            "the flood median %.1f ms, max %.1f ms over %d probes\n",
            hellos, frames, t_sent,
            dropped == 1   ? "slow reader"
            : dropped == 2 ? "connection closed"
                           : "not",
            t_slow, base[2], base[4], probes ? rtt[probes / 2] : -1.0,
            probes ? rtt[probes - 1] : -1.0, probes);
    int64_t size1 = fx_db_int(&f, used);
    int64_t rej1 = fx_db_int(&f, "SELECT count(*) FROM audit_entry WHERE action LIKE 'reject.%'");
    long rss1 = s_rss_kb(coord);
    fprintf(stderr,
            "flood: database (used pages) %lld -> %lld bytes: %.1f bytes per flood frame; %lld "
            "reject entries added; coordinator RSS %ld -> %ld kB (max %ld)\n",
            (long long)size0, (long long)size1, (double)(size1 - size0) / (hellos + frames),
            (long long)(rej1 - rej0), rss0, rss1, rss_max);
    /* bounded: a few entries per reason class, not one per frame */
    CHECK(rej1 - rej0 <= 60);

    /* The honest job runs next to the muted flooder. */
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent_for(&f, s, NULL, 170);
    CHECK_EQ_INT(fx_wait(coord, 170), 0);
    for (int s = 0; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 30), 0);
    fx_node_free(&prober);
    zmq_close(fl);
    zmq_ctx_term(ctx);
    char state[32] = "";
    CHECK_EQ_INT(fx_job_state(&f, state, sizeof state), 0);
    CHECK(strcmp(state, "completed") == 0);
    cnd_round_rec_t *r = NULL;
    size_t nr = 0;
    CHECK_EQ_INT(fx_rounds(&f, &r, &nr), 0);
    CHECK_EQ_INT(nr, 3);
    for (size_t i = 0; i < nr; i++) {
        CHECK(strcmp(r[i].outcome, "ok") == 0);
        CHECK_EQ_INT(r[i].survivors, 3);
    }
    fx_rounds_free(r, nr);
    int64_t rej2 = fx_db_int(&f, "SELECT count(*) FROM audit_entry WHERE action LIKE 'reject.%'");
    int64_t counted = fx_db_int(&f, "SELECT coalesce(sum(json_extract(entry, '$.details.count')),"
                                    " 0) FROM audit_entry WHERE action = 'reject.summary'");
    fprintf(stderr, "flood: %lld reject entries in all, %lld refusals counted in summaries\n",
            (long long)(rej2 - rej0), (long long)counted);
    CHECK(rej2 - rej0 <= 60);
    char db[400], log[400];
    fx_path(db, sizeof db, f.coord, "coordinator.db");
    fx_path(log, sizeof log, f.root, "verify.log");
    const char *ver[] = {"audit", "verify", db, NULL};
    CHECK_EQ_INT(fx_run(log, ver), 0);
    fx_node_free(&mal);
    if (check_failures) fx_dump(clog);
    fx_fed_cleanup(&f);
    return check_result("test_federation_flood");
}
