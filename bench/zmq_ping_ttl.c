/*
 * zmq_ping_ttl.c: what devices' ZMTP PINGs cost a server's libzmq I/O thread, with and without a
 * TTL (docs/benchmarks.md, "Device PINGs with and without a TTL"; proto/transport.h,
 * heartbeat_no_ttl). Plain libzmq over TCP, no CURVE: the timers do not depend on the mechanism.
 *
 *   zmq_ping_ttl server ENDPOINT
 *   zmq_ping_ttl client ENDPOINT N TTL_MS APP_MS
 *
 * The server binds a ROUTER with no heartbeats of its own and discards what arrives. A client
 * process opens N DEALERs to ENDPOINT, each pinging every 2 s with a 6 s timeout and asking the
 * server for TTL_MS (0: none), and sends one small message per DEALER every APP_MS, at random
 * phases (a device's application heartbeat). bench/zmq_ping_ttl.sh builds and runs both and
 * reads the server's CPU time from /proc.
 */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static double s_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int s_server(const char *ep)
{
    void *ctx = zmq_ctx_new(), *r = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(r, ZMQ_HEARTBEAT_IVL, &zero, sizeof zero);
    if (zmq_bind(r, ep) != 0) {
        fprintf(stderr, "zmq_ping_ttl: bind %s: %s\n", ep, zmq_strerror(zmq_errno()));
        return 1;
    }
    char buf[256];
    for (;;) {
        zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 100);
        while (zmq_recv(r, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) {
        }
    }
}

static int s_client(const char *ep, int n, int ttl, int app_ms)
{
    void *ctx = zmq_ctx_new();
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, n + 16);
    void **s = calloc((size_t)n, sizeof *s);
    double *next = calloc((size_t)n, sizeof *next), t0 = s_now();
    if (!s || !next) return 1;
    for (int i = 0; i < n; i++) {
        int ivl = 2000, timeout = 6000, linger = 0;
        s[i] = zmq_socket(ctx, ZMQ_DEALER);
        zmq_setsockopt(s[i], ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
        zmq_setsockopt(s[i], ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout);
        zmq_setsockopt(s[i], ZMQ_HEARTBEAT_TTL, &ttl, sizeof ttl);
        zmq_setsockopt(s[i], ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_connect(s[i], ep) != 0) {
            fprintf(stderr, "zmq_ping_ttl: connect %s: %s\n", ep, zmq_strerror(zmq_errno()));
            return 1;
        }
        next[i] = t0 + 5.0 + (double)rand() / RAND_MAX * app_ms / 1000.0;
        if (i % 200 == 199) usleep(20000); /* within the listen backlog */
    }
    for (;;) {
        double t = s_now();
        for (int i = 0; i < n; i++)
            if (t >= next[i]) {
                zmq_send(s[i], "hb", 2, ZMQ_DONTWAIT);
                next[i] = t + app_ms / 1000.0;
            }
        usleep(20000);
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "server") == 0) return s_server(argv[2]);
    if (argc == 6 && strcmp(argv[1], "client") == 0)
        return s_client(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    fprintf(stderr, "usage: zmq_ping_ttl server ENDPOINT | client ENDPOINT N TTL_MS APP_MS\n");
    return 2;
}
