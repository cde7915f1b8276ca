/*
 * cmd_bench_proto.c: `condenser bench proto`, the wire protocol benchmark behind the
 * "Wire protocol" section of docs/benchmarks.md.
 *
 * What it measures, each as a median over repetitions, side by side in one run:
 *   1. encode: a packed masked vector (default 1,000,000 values of 16 bits) into a MaskedInput
 *      header and MSG_CHUNK frames (SHA-256 of the object and of each chunk, validation,
 *      protobuf-c packing into one reused buffer, a copy per frame as zmq_send makes); decode:
 *      every frame decoded and validated, chunks verified and reassembled into a new buffer,
 *      whole-object digest checked. Beside them, the floor: one SHA-256 pass and one memcpy over
 *      the same bytes. Each side hashes every byte twice (chunk digests, object digest).
 *   2. bytes on the wire: the same frames sent over a CURVE session through a byte-counting
 *      TCP relay, against the payload size and against 8 bytes per value (what Flower's SecAgg+
 *      sends). Handshake bytes are measured separately and not charged to the payload.
 *   3. round-trip latency of a small message (a heartbeat envelope, encoded and decoded at
 *      each end) over CURVE on loopback TCP, against the same exchange over a plain (NULL
 *      mechanism) ZeroMQ connection. The plain sockets exist only inside this benchmark.
 */
#include "chunk.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "digest.h"
#include "progress.h"
#include "proto.h"
#include "rng.h"
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double s_quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, s_cmp_double);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* --- the frames of one masked input ------------------------------------------------------- */

/* Frames as they would sit in the transport's queue: one buffer per frame, kept from one
 * repetition to the next (as a sender's socket buffers are), header first, then chunks. */
typedef struct {
    uint8_t **frame;
    size_t *len, *cap;
    size_t n;
    size_t bytes; /* sum of len */
} frames_t;

static void s_frames_free(frames_t *f)
{
    for (size_t i = 0; i < f->n; i++) free(f->frame[i]);
    free(f->frame);
    free(f->len);
    free(f->cap);
    memset(f, 0, sizeof *f);
}

/* Hands one encoded frame to the "transport": a copy, as zmq_send makes. */
static int s_put(frames_t *f, size_t i, const cnd_buf_t *b)
{
    if (f->cap[i] < b->len) {
        uint8_t *p = realloc(f->frame[i], b->len);
        if (!p) return cnd_errf(CND_ENOMEM, "bench: out of memory");
        f->frame[i] = p;
        f->cap[i] = b->len;
    }
    memcpy(f->frame[i], b->data, b->len);
    f->len[i] = b->len;
    f->bytes += b->len;
    return 0;
}

/* Encodes `vec` (packed, len bytes, `values` values of `bits`) as a MaskedInput and chunks, the
 * way a sender does: each frame into the one reused buffer `scratch`, then handed over. */
static int s_encode(frames_t *out, cnd_buf_t *scratch, const uint8_t *vec, uint64_t len,
                    uint64_t values, uint32_t bits, uint32_t chunk_size, uint64_t *seq)
{
    Condenser__ObjectInfo info;
    uint8_t digest[32];
    int rc = cnd_chunk_plan(&info, digest, vec, len, chunk_size);
    if (rc) return rc;
    if (out->n != 1 + (size_t)info.chunk_count) {
        s_frames_free(out);
        out->n = 1 + info.chunk_count;
        out->frame = calloc(out->n, sizeof *out->frame);
        out->len = calloc(out->n, sizeof *out->len);
        out->cap = calloc(out->n, sizeof *out->cap);
        if (!out->frame || !out->len || !out->cap)
            return cnd_errf(CND_ENOMEM, "bench: out of memory");
    }
    out->bytes = 0;
    Condenser__MaskedInput mi;
    condenser__masked_input__init(&mi);
    mi.vector = &info;
    mi.bit_width = bits;
    mi.length = values;
    mi.participant_id = 1;
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_MASKED_INPUT, &mi, 1, 1, "site-a",
                            (*seq)++);
    if ((rc = cnd_proto_encode_buf(scratch, &env)) || (rc = s_put(out, 0, scratch))) return rc;
    for (uint32_t i = 0; i < info.chunk_count; i++) {
        Condenser__Chunk c;
        uint8_t sha[32];
        if ((rc =
                 cnd_chunk_piece(&c, sha, CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT, &info, vec, i)))
            return rc;
        cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_CHUNK, &c, 1, 1, "site-a", (*seq)++);
        if ((rc = cnd_proto_encode_buf(scratch, &env)) || (rc = s_put(out, 1 + i, scratch)))
            return rc;
    }
    return 0;
}

/* Decodes the frames, reassembles and verifies the vector; *got must equal the original. */
static int s_decode(uint8_t **got, uint64_t *got_len, const frames_t *f, uint64_t max_total)
{
    *got = NULL;
    cnd_proto_msg_t *m = NULL;
    int rc = cnd_proto_decode(&m, NULL, f->frame[0], f->len[0]);
    if (rc) return rc;
    cnd_assembler_t *a = NULL;
    rc = cnd_assembler_new(&a, NULL, CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT,
                           m->env->masked_input->vector, max_total);
    cnd_proto_msg_destroy(&m);
    for (size_t i = 1; !rc && i < f->n; i++) {
        rc = cnd_proto_decode(&m, NULL, f->frame[i], f->len[i]);
        if (!rc) rc = cnd_assembler_add(a, NULL, m->env->chunk);
        cnd_proto_msg_destroy(&m);
    }
    if (!rc) rc = cnd_assembler_finish(a, NULL, got, got_len);
    cnd_assembler_destroy(&a);
    return rc;
}

/* --- a byte-counting TCP relay ------------------------------------------------------------ */

typedef struct {
    int listen_fd;
    int port;               /* where clients connect */
    int target_port;        /* where the relay connects */
    atomic_ullong up, down; /* bytes client -> server, server -> client */
    atomic_int stop;
    pthread_t thread;
} relay_t;

static void *s_relay_main(void *arg)
{
    relay_t *r = arg;
    int c = -1, s = -1;
    struct pollfd lp = {r->listen_fd, POLLIN, 0};
    while (!atomic_load(&r->stop) && c < 0) {
        if (poll(&lp, 1, 50) > 0) c = accept(r->listen_fd, NULL, NULL);
    }
    if (c < 0) return NULL;
    s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)r->target_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(c);
        close(s);
        return NULL;
    }
    static _Thread_local uint8_t buf[1 << 16];
    struct pollfd p[2] = {{c, POLLIN, 0}, {s, POLLIN, 0}};
    while (!atomic_load(&r->stop)) {
        if (poll(p, 2, 50) <= 0) continue;
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP))) continue;
            ssize_t n = read(p[i].fd, buf, sizeof buf);
            if (n <= 0) goto done;
            int to = i == 0 ? s : c;
            for (ssize_t w = 0; w < n;) {
                ssize_t k = write(to, buf + w, (size_t)(n - w));
                if (k <= 0) goto done;
                w += k;
            }
            if (i == 0)
                atomic_fetch_add(&r->up, (unsigned long long)n);
            else
                atomic_fetch_add(&r->down, (unsigned long long)n);
        }
    }
done:
    close(c);
    close(s);
    return NULL;
}

static int s_relay_start(relay_t *r, int target_port)
{
    memset(r, 0, sizeof *r);
    r->target_port = target_port;
    r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (r->listen_fd < 0 || bind(r->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(r->listen_fd, 1) != 0 || getsockname(r->listen_fd, (struct sockaddr *)&a, &al))
        return cnd_errf(CND_EIO, "bench: relay socket: %s", strerror(errno));
    r->port = ntohs(a.sin_port);
    if (pthread_create(&r->thread, NULL, s_relay_main, r) != 0)
        return cnd_errf(CND_EIO, "bench: relay thread failed");
    return 0;
}

static void s_relay_stop(relay_t *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->thread, NULL);
    close(r->listen_fd);
}

static int s_allow_all(void *ctx, const uint8_t pub[32], char user_id[CND_USER_ID_MAX])
{
    const uint8_t *want = ctx;
    if (sodium_memcmp(pub, want, 32) != 0) return 0;
    snprintf(user_id, CND_USER_ID_MAX, "site-a");
    return 1;
}

static int s_port_of(const char *endpoint)
{
    const char *c = strrchr(endpoint, ':');
    return c ? atoi(c + 1) : 0;
}

/* Waits until `want` more bytes went up through the relay (or 5 s). */
static void s_wait_bytes(relay_t *r, unsigned long long want)
{
    double t0 = cnd_now();
    while (atomic_load(&r->up) < want && cnd_now() - t0 < 5) usleep(1000);
}

typedef struct {
    double hs_up, hs_down; /* handshake + first heartbeat, bytes */
    double frames_up;      /* bytes up for one masked input */
    double rtt_curve[3];   /* median, p90, p99 in microseconds */
    double rtt_plain[3];
    int rtt_n;
} net_result_t;

/* A CURVE session through the byte-counting relay: server, relay, client. */
typedef struct {
    cnd_server_t *srv;
    cnd_client_t *cli;
    relay_t relay;
    int relay_on;
    uint8_t srv_pk[32], srv_sk[32], cli_pk[32], cli_sk[32];
    uint64_t seq; /* envelope sequence numbers of the client */
} net_t;

static int s_net_open(net_t *n)
{
    memset(n, 0, sizeof *n);
    n->seq = 1;
    crypto_box_keypair(n->srv_pk, n->srv_sk);
    crypto_box_keypair(n->cli_pk, n->cli_sk);
    cnd_server_opts_t so;
    memset(&so, 0, sizeof so);
    so.endpoint = "tcp://127.0.0.1:*";
    so.secret_key = n->srv_sk;
    so.allow = s_allow_all;
    so.allow_ctx = n->cli_pk;
    so.hwm = 100000; /* measure the wire, not the queue limits */
    int rc;
    if ((rc = cnd_server_new(&n->srv, &so))) return rc;
    if ((rc = s_relay_start(&n->relay, s_port_of(cnd_server_endpoint(n->srv))))) return rc;
    n->relay_on = 1;
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", n->relay.port);
    cnd_client_opts_t co;
    memset(&co, 0, sizeof co);
    co.endpoint = ep;
    co.server_key = n->srv_pk;
    co.public_key = n->cli_pk;
    co.secret_key = n->cli_sk;
    co.hwm = 100000;
    co.heartbeat_ivl_ms = 60000; /* keep ZMTP PINGs out of the byte count */
    return cnd_client_new(&n->cli, &co);
}

static void s_net_close(net_t *n)
{
    cnd_client_destroy(&n->cli);
    if (n->relay_on) s_relay_stop(&n->relay);
    cnd_server_destroy(&n->srv);
}

/* A heartbeat envelope from the client, encoded into *msg (freed first). */
static int s_heartbeat(uint8_t **msg, size_t *len, uint64_t seq)
{
    Condenser__Heartbeat hb;
    condenser__heartbeat__init(&hb);
    hb.unix_ms = 1;
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &hb, 0, 0, "site-a", seq);
    free(*msg);
    *msg = NULL;
    return cnd_proto_encode(msg, len, &env);
}

/* Bytes through the relay: the handshake plus one heartbeat (the fixed cost of a session), then
 * the frames of one masked input, each checked to arrive unchanged. */
static int s_net_bytes(net_result_t *res, net_t *n, const frames_t *fr)
{
    uint8_t *small = NULL;
    size_t small_n = 0;
    cnd_frame_t f;
    int rc;
    if ((rc = s_heartbeat(&small, &small_n, n->seq)) ||
        (rc = cnd_client_send(n->cli, small, small_n, 5000)) ||
        (rc = cnd_server_recv(n->srv, &f, 5000))) {
        free(small);
        return rc;
    }
    free(small);
    cnd_frame_clear(&f);
    res->hs_up = (double)atomic_load(&n->relay.up);
    res->hs_down = (double)atomic_load(&n->relay.down);

    unsigned long long before = atomic_load(&n->relay.up);
    for (size_t i = 0; i < fr->n; i++)
        if ((rc = cnd_client_send(n->cli, fr->frame[i], fr->len[i], 5000))) return rc;
    for (size_t i = 0; i < fr->n; i++) {
        if ((rc = cnd_server_recv(n->srv, &f, 5000))) return rc;
        int same = f.len == fr->len[i] && memcmp(f.data, fr->frame[i], f.len) == 0;
        cnd_frame_clear(&f);
        if (!same) return cnd_errf(CND_ECORRUPT, "bench: frame %zu changed in transit", i);
    }
    s_wait_bytes(&n->relay, before + fr->bytes);
    res->frames_up = (double)(atomic_load(&n->relay.up) - before);
    return 0;
}

static void s_quantiles(double q[3], double *rtt, int n)
{
    q[0] = s_quantile(rtt, (size_t)n, 0.5);
    q[1] = s_quantile(rtt, (size_t)n, 0.9);
    q[2] = s_quantile(rtt, (size_t)n, 0.99);
}

/* Round trips over CURVE: encode, send, receive, decode, answer, receive, decode; rtt[i] in
 * microseconds after 100 warm-up rounds. */
static int s_rtt_curve(double *rtt, int rtt_n, net_t *n, cnd_progress_t *pg)
{
    uint8_t *small = NULL;
    size_t small_n = 0;
    int rc = 0;
    for (int i = -100; i < rtt_n && !rc; i++) {
        double t0 = cnd_now();
        cnd_frame_t f;
        if ((rc = s_heartbeat(&small, &small_n, ++n->seq)) ||
            (rc = cnd_client_send(n->cli, small, small_n, 5000)) ||
            (rc = cnd_server_recv(n->srv, &f, 5000)))
            break;
        cnd_proto_msg_t *m = NULL;
        rc = cnd_proto_decode(&m, NULL, f.data, f.len);
        cnd_proto_msg_destroy(&m);
        if (!rc) rc = cnd_server_send(n->srv, &f.peer, small, small_n, 5000);
        cnd_frame_clear(&f);
        uint8_t *back = NULL;
        size_t bl;
        if (!rc) rc = cnd_client_recv(n->cli, &back, &bl, 5000);
        if (!rc) rc = cnd_proto_decode(&m, NULL, back, bl);
        cnd_proto_msg_destroy(&m);
        free(back);
        if (rc) break;
        if (i >= 0) rtt[i] = (cnd_now() - t0) * 1e6;
        if (i >= 0) cnd_progress_update(pg, (uint64_t)i, "curve");
    }
    free(small);
    return rc;
}

/* The same exchange over plain ZeroMQ TCP (NULL mechanism), benchmark-only sockets. */
static int s_rtt_plain(double *rtt, int rtt_n, uint64_t *seq, cnd_progress_t *pg)
{
    uint8_t *small = NULL;
    size_t small_n = 0;
    int rc = 0;
    void *pctx = zmq_ctx_new();
    void *prouter = zmq_socket(pctx, ZMQ_ROUTER);
    void *pdealer = zmq_socket(pctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(prouter, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(pdealer, ZMQ_LINGER, &zero, sizeof zero);
    char pep[256];
    size_t pl = sizeof pep;
    if (zmq_bind(prouter, "tcp://127.0.0.1:*") ||
        zmq_getsockopt(prouter, ZMQ_LAST_ENDPOINT, pep, &pl) || zmq_connect(pdealer, pep))
        rc = cnd_errf(CND_EIO, "bench: plain sockets: %s", zmq_strerror(errno));
    for (int i = -100; i < rtt_n && !rc; i++) {
        double t0 = cnd_now();
        if ((rc = s_heartbeat(&small, &small_n, ++*seq))) break;
        zmq_send(pdealer, small, small_n, 0);
        zmq_msg_t id, msg;
        zmq_msg_init(&id);
        zmq_msg_init(&msg);
        zmq_msg_recv(&id, prouter, 0);
        zmq_msg_recv(&msg, prouter, 0);
        cnd_proto_msg_t *m = NULL;
        rc = cnd_proto_decode(&m, NULL, zmq_msg_data(&msg), zmq_msg_size(&msg));
        cnd_proto_msg_destroy(&m);
        zmq_send(prouter, zmq_msg_data(&id), zmq_msg_size(&id), ZMQ_SNDMORE);
        zmq_send(prouter, small, small_n, 0);
        zmq_msg_close(&id);
        zmq_msg_close(&msg);
        zmq_msg_init(&msg);
        zmq_msg_recv(&msg, pdealer, 0);
        if (!rc) rc = cnd_proto_decode(&m, NULL, zmq_msg_data(&msg), zmq_msg_size(&msg));
        cnd_proto_msg_destroy(&m);
        zmq_msg_close(&msg);
        if (rc) break;
        if (i >= 0) rtt[i] = (cnd_now() - t0) * 1e6;
        if (i >= 0) cnd_progress_update(pg, (uint64_t)rtt_n + (uint64_t)i, "plain");
    }
    free(small);
    if (pdealer) zmq_close(pdealer);
    if (prouter) zmq_close(prouter);
    if (pctx) zmq_ctx_term(pctx);
    return rc;
}

/* Bytes on the wire through the relay, then CURVE and plain round trips. */
static int s_bench_net(net_result_t *res, const frames_t *fr, int rtt_n, cnd_progress_t *pg)
{
    double *rtt = calloc((size_t)rtt_n, sizeof *rtt);
    if (!rtt) return cnd_errf(CND_ENOMEM, "bench: out of memory");
    net_t n;
    int rc = s_net_open(&n);
    if (!rc) rc = s_net_bytes(res, &n, fr);
    if (!rc) {
        cnd_progress_begin(pg, "round trips", (uint64_t)rtt_n * 2, "rtt");
        rc = s_rtt_curve(rtt, rtt_n, &n, pg);
    }
    if (!rc) {
        s_quantiles(res->rtt_curve, rtt, rtt_n);
        rc = s_rtt_plain(rtt, rtt_n, &n.seq, pg);
    }
    if (!rc) {
        cnd_progress_end(pg);
        s_quantiles(res->rtt_plain, rtt, rtt_n);
        res->rtt_n = rtt_n;
    }
    free(rtt);
    s_net_close(&n);
    return rc;
}

/* The object is a crypto/secagg.h MASKED message: 26-byte header, then the packed vector (the
 * payload). Random bytes stand in for the masked values: the protocol never looks. */
static void s_fill_vector(uint8_t *vec, uint64_t len, long values, long bits)
{
    cnd_rng_t r;
    cnd_rng_seed(&r, 1);
    for (uint64_t i = 0; i < len; i++) vec[i] = (uint8_t)cnd_rng_u64(&r);
    memcpy(vec, "CSA1", 4);
    vec[4] = 5; /* MASKED */
    memset(vec + 5, 0, 12);
    memset(vec + 17, 0xff, 4);
    cnd_st_le32(vec + 21, (uint32_t)values);
    vec[25] = (uint8_t)bits;
}

/* What one run measured, for the reports. */
typedef struct {
    long values, bits, chunk, reps;
    uint64_t packed, len; /* payload bytes; the MASKED message around it */
    frames_t fr;
    double enc, dec, sha, cpy; /* medians, seconds */
    net_result_t net;
} s_proto_bench_t;

/* Encode/decode repetitions beside one SHA-256 pass and one memcpy over the same bytes; the
 * medians go to b, the frames of the last repetition stay in b->fr. */
static int s_bench_codec(s_proto_bench_t *b, const uint8_t *vec, uint8_t *copy)
{
    const size_t reps = (size_t)b->reps;
    const uint64_t len = b->len;
    double *t_enc = calloc(reps, sizeof(double)), *t_dec = calloc(reps, sizeof(double));
    double *t_sha = calloc(reps, sizeof(double)), *t_cpy = calloc(reps, sizeof(double));
    cnd_buf_t scratch;
    cnd_buf_init(&scratch);
    cnd_progress_t pg;
    uint64_t seq = 1;
    int rc = 0;
    if (!t_enc || !t_dec || !t_sha || !t_cpy) {
        rc = cnd_errf(CND_ENOMEM, "bench: out of memory");
        goto done;
    }
    cnd_progress_begin(&pg, "encode/decode", reps, "reps");
    for (size_t i = 0; i < reps; i++) {
        double t0 = cnd_now();
        if ((rc = s_encode(&b->fr, &scratch, vec, len, (uint64_t)b->values, (uint32_t)b->bits,
                           (uint32_t)b->chunk, &seq)))
            goto done;
        t_enc[i] = cnd_now() - t0;
        uint8_t *got = NULL;
        uint64_t got_len = 0;
        t0 = cnd_now();
        rc = s_decode(&got, &got_len, &b->fr, len);
        t_dec[i] = cnd_now() - t0;
        if (!rc && (got_len != len || memcmp(got, vec, len) != 0))
            rc = cnd_errf(CND_ECORRUPT, "bench: decoded vector differs from the original");
        free(got);
        if (rc) goto done;
        uint8_t h[32];
        t0 = cnd_now();
        cnd_sha256(h, vec, len);
        t_sha[i] = cnd_now() - t0;
        t0 = cnd_now();
        memcpy(copy, vec, len);
        t_cpy[i] = cnd_now() - t0;
        if (copy[len / 2] != vec[len / 2]) abort(); /* keep the copy observable */
        cnd_progress_update(&pg, (uint64_t)i + 1, NULL);
    }
    cnd_progress_end(&pg);
    b->enc = s_quantile(t_enc, reps, 0.5);
    b->dec = s_quantile(t_dec, reps, 0.5);
    b->sha = s_quantile(t_sha, reps, 0.5);
    b->cpy = s_quantile(t_cpy, reps, 0.5);
done:
    cnd_buf_free(&scratch);
    free(t_enc);
    free(t_dec);
    free(t_sha);
    free(t_cpy);
    return rc;
}

static void s_print_json(const s_proto_bench_t *b)
{
    const net_result_t *net = &b->net;
    double mb = (double)b->len / 1e6;
    double proto_over = (double)b->fr.bytes / (double)b->packed - 1;
    double wire_over = net->frames_up / (double)b->packed - 1;
    double wire_per_value = net->frames_up / (double)b->values;
    printf("{\"values\":%ld,\"bits\":%ld,\"payload_bytes\":%llu,\"chunk_size\":%ld,"
           "\"frames\":%zu,\"encode_ms\":%.3f,\"decode_ms\":%.3f,\"sha256_ms\":%.3f,"
           "\"memcpy_ms\":%.3f,\"encode_mb_s\":%.1f,\"decode_mb_s\":%.1f,"
           "\"sha256_mb_s\":%.1f,\"memcpy_mb_s\":%.1f,\"encoded_bytes\":%zu,"
           "\"wire_bytes\":%.0f,\"proto_overhead\":%.6f,\"wire_overhead\":%.6f,"
           "\"wire_bytes_per_value\":%.4f,\"flower_bytes_per_value\":8,"
           "\"handshake_bytes_up\":%.0f,\"handshake_bytes_down\":%.0f,\"rtt_n\":%d,"
           "\"rtt_curve_us\":[%.1f,%.1f,%.1f],\"rtt_plain_us\":[%.1f,%.1f,%.1f]}\n",
           b->values, b->bits, (unsigned long long)b->packed, b->chunk, b->fr.n, b->enc * 1e3,
           b->dec * 1e3, b->sha * 1e3, b->cpy * 1e3, mb / b->enc, mb / b->dec, mb / b->sha,
           mb / b->cpy, b->fr.bytes, net->frames_up, proto_over, wire_over, wire_per_value,
           net->hs_up, net->hs_down, net->rtt_n, net->rtt_curve[0], net->rtt_curve[1],
           net->rtt_curve[2], net->rtt_plain[0], net->rtt_plain[1], net->rtt_plain[2]);
}

static void s_print_text(const s_proto_bench_t *b)
{
    const net_result_t *net = &b->net;
    double mb = (double)b->len / 1e6;
    double enc = b->enc, dec = b->dec, sha = b->sha, cpy = b->cpy;
    double proto_over = (double)b->fr.bytes / (double)b->packed - 1;
    double wire_over = net->frames_up / (double)b->packed - 1;
    double wire_per_value = net->frames_up / (double)b->values;
    printf("masked vector: %ld values x %ld bits = %llu bytes in a %llu-byte MASKED message, "
           "%zu frames (%ld-byte chunks), medians of %ld runs\n\n",
           b->values, b->bits, (unsigned long long)b->packed, (unsigned long long)b->len, b->fr.n,
           b->chunk, b->reps);
    printf("  %-34s %10s %10s %8s\n", "", "ms", "MB/s", "x sha256");
    printf("  %-34s %10.2f %10.0f %8.2f\n", "encode (plan+chunks+validate+pack)", enc * 1e3,
           mb / enc, enc / sha);
    printf("  %-34s %10.2f %10.0f %8.2f\n", "decode (unpack+validate+reassemble)", dec * 1e3,
           mb / dec, dec / sha);
    printf("  %-34s %10.2f %10.0f %8.2f\n", "floor: one SHA-256 pass", sha * 1e3, mb / sha, 1.0);
    printf("  %-34s %10.2f %10.0f %8.2f\n\n", "floor: memcpy", cpy * 1e3, mb / cpy, cpy / sha);
    printf("  bytes: payload %llu, encoded frames %zu (+%.4f%%), on the wire over CURVE "
           "%.0f (+%.4f%%)\n",
           (unsigned long long)b->packed, b->fr.bytes, 100 * proto_over, net->frames_up,
           100 * wire_over);
    printf("  bytes per value on the wire: %.4f (Flower SecAgg+: 8, %.1fx more)\n", wire_per_value,
           8 / wire_per_value);
    printf("  session setup (handshake + first heartbeat): %.0f bytes up, %.0f down\n\n",
           net->hs_up, net->hs_down);
    printf("  round trip of a %s (%d runs)   median     p90     p99  (us)\n", "heartbeat",
           net->rtt_n);
    printf("    CURVE (tcp loopback)          %8.1f %8.1f %8.1f\n", net->rtt_curve[0],
           net->rtt_curve[1], net->rtt_curve[2]);
    printf("    plain ZeroMQ (tcp loopback)   %8.1f %8.1f %8.1f   CURVE/plain %.2fx\n",
           net->rtt_plain[0], net->rtt_plain[1], net->rtt_plain[2],
           net->rtt_curve[0] / net->rtt_plain[0]);
}

int cnd_cmd_bench_proto(int argc, char **argv)
{
    s_proto_bench_t b;
    memset(&b, 0, sizeof b);
    b.values = 1000000;
    b.bits = 16;
    b.chunk = CND_PROTO_CHUNK_MAX;
    b.reps = 31;
    long rtts = 2000;
    int json = 0;
    const cnd_opt_t opts[] = {
        {"values", CND_OPT_INT, &b.values, "N", "values in the masked vector (default 1000000)", 1,
         100000000},
        {"bits", CND_OPT_INT, &b.bits, "B", "bits per packed value (default 16)", 1, 64},
        {"chunk", CND_OPT_INT, &b.chunk, "BYTES", "chunk size (default 262144)",
         CND_PROTO_CHUNK_MIN, CND_PROTO_CHUNK_MAX},
        {"reps", CND_OPT_INT, &b.reps, "R", "encode/decode repetitions (default 31)", 1, 1000},
        {"rtt", CND_OPT_INT, &rtts, "N", "round trips per transport (default 2000)", 10, 1000000},
        {"json", CND_OPT_FLAG, &json, NULL, "print the results as JSON"},
        {0}};
    const cnd_cli_t cli = {
        "condenser bench proto [--values N] [--bits B] [--chunk BYTES] [--json]",
        "Measures the wire protocol: encode and decode throughput of a chunked masked vector "
        "(with SHA-256 and validation) against one SHA-256 pass and a memcpy, bytes on the wire "
        "over a CURVE session against the payload and against 8 bytes per value, and the "
        "round-trip latency of a small message over CURVE against plain ZeroMQ on loopback.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (sodium_init() < 0) return cnd_errf(CND_ECRYPTO, "libsodium failed to initialise");
    b.packed = ((uint64_t)b.values * (uint64_t)b.bits + 7) / 8;
    b.len = CND_PROTO_MASKED_HDR + b.packed;
    if (b.len > CND_PROTO_OBJECT_MAX)
        return cnd_errf(CND_EINVAL, "--values %ld x --bits %ld is over the object limit", b.values,
                        b.bits);
    uint8_t *vec = malloc(b.len), *copy = malloc(b.len);
    if (!vec || !copy) {
        free(vec);
        free(copy);
        return cnd_errf(CND_ENOMEM, "bench: no memory for a %llu-byte vector",
                        (unsigned long long)b.len);
    }
    s_fill_vector(vec, b.len, b.values, b.bits);
    cnd_progress_t pg;
    if (!(rc = s_bench_codec(&b, vec, copy)) &&
        !(rc = s_bench_net(&b.net, &b.fr, (int)rtts, &pg))) {
        if (json)
            s_print_json(&b);
        else
            s_print_text(&b);
    }
    s_frames_free(&b.fr);
    free(vec);
    free(copy);
    return rc;
}
