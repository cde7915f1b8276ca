/*
 * http_testutil.h: what the metrics tests need of HTTP on loopback: a free TCP port, a plain
 * HTTP/1.0 request, and `promtool check metrics` on an exposition.
 */
#ifndef CND_HTTP_TESTUTIL_H
#define CND_HTTP_TESTUTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* A TCP port on 127.0.0.1 that was free a moment ago; -1 when none could be found.
 *
 * The port is picked below the kernel's ephemeral range (32768-60999 by default): a port the
 * kernel hands out for bind(port 0) can be taken, before the test's daemon binds it, as the
 * local port of any outgoing connection of the tests running beside this one (CI saw a
 * coordinator's metrics port lost that way). Ports are drawn from 20000-32767 starting at a
 * point that depends on the pid, the time and a per-process counter, so two tests started
 * together do not walk the same sequence, and one process never gets the same port twice. */
static inline int th_free_port(void)
{
    static unsigned calls;
    unsigned span = 32768 - 20000;
    unsigned start = ((unsigned)getpid() * 2654435761u) ^ ((unsigned)time(NULL) * 40503u);
    start += calls++ * 797u;
    for (unsigned i = 0; i < span; i++) {
        int port = 20000 + (int)((start + i * 7919u) % span);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) return -1;
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)port);
        int ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
        close(s);
        if (ok) return port;
    }
    return -1;
}

/* An HTTP/1.0 request to 127.0.0.1:port; the whole response (headers and body) into out.
 * Returns the bytes received, or -1. */
static inline int th_http(int port, const char *method, const char *path, char *out, size_t cap)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    struct timeval tv = {10, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    if (write(s, req, (size_t)n) != n) {
        close(s);
        return -1;
    }
    size_t got = 0;
    ssize_t r;
    while (got + 1 < cap && (r = read(s, out + got, cap - 1 - got)) > 0) got += (size_t)r;
    out[got] = 0;
    close(s);
    return (int)got;
}

/* The body of a response th_http received. */
static inline const char *th_body(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

/* Whether text holds needle; says which when not. */
static inline int th_has(const char *text, const char *needle)
{
    int ok = strstr(text, needle) != NULL;
    if (!ok) fprintf(stderr, "metrics lack '%s'\n", needle);
    return ok;
}

/* Writes body to path and runs `promtool check metrics` on it; its exit status (output on
 * stderr when it fails). */
static inline int th_promtool(const char *path, const char *body)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int ok = fwrite(body, 1, strlen(body), f) == strlen(body);
    if (fclose(f) != 0 || !ok) return -1;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' > '%s.promtool' 2>&1", path, path);
    int rc = system(cmd);
    if (rc) {
        snprintf(cmd, sizeof cmd, "cat '%s.promtool' >&2", path);
        (void)!system(cmd);
    }
    return rc;
}

#endif
