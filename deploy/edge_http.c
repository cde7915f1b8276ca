/*
 * edge_http.c: see edge_http.h. libcurl's easy interface: one handle per device, reused, so
 * consecutive range requests share a connection.
 */
#include "edge_http.h"
#include "error.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cnd_edge_http {
    CURL *c;
};

typedef struct {
    uint8_t *out;
    size_t cap, got;
    int overflow;
} s_sink_t;

static size_t s_write(char *p, size_t sz, size_t n, void *ctx)
{
    s_sink_t *s = ctx;
    size_t b = sz * n;
    if (b > s->cap - s->got) {
        s->overflow = 1;
        return 0; /* more than asked for: abort the transfer */
    }
    memcpy(s->out + s->got, p, b);
    s->got += b;
    return b;
}

int cnd_edge_http_new(cnd_edge_http_t **out)
{
    *out = NULL;
    static int inited;
    if (!inited) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return cnd_errf(CND_EIO, "artifact cache: libcurl failed to initialise");
        inited = 1;
    }
    cnd_edge_http_t *h = calloc(1, sizeof *h);
    if (!h || !(h->c = curl_easy_init())) {
        free(h);
        return cnd_errf(CND_ENOMEM, "artifact cache: out of memory");
    }
    CURL *c = h->c;
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "condenser-edge");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_write);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, NULL); /* bytes as stored, never decoded */
    *out = h;
    return 0;
}

void cnd_edge_http_free(cnd_edge_http_t **h)
{
    if (!h || !*h) return;
    curl_easy_cleanup((*h)->c);
    free(*h);
    *h = NULL;
}

int cnd_edge_http_fetch(void *ctx, const char *url, uint64_t off, uint32_t len, uint8_t *out)
{
    cnd_edge_http_t *h = ctx;
    if (!len) return cnd_errf(CND_EINVAL, "artifact cache: empty range");
    char range[64];
    snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, off, off + len - 1);
    s_sink_t sink = {out, len, 0, 0};
    curl_easy_setopt(h->c, CURLOPT_URL, url);
    curl_easy_setopt(h->c, CURLOPT_RANGE, range);
    curl_easy_setopt(h->c, CURLOPT_WRITEDATA, &sink);
    CURLcode cc = curl_easy_perform(h->c);
    long status = 0;
    curl_easy_getinfo(h->c, CURLINFO_RESPONSE_CODE, &status);
    if (sink.overflow)
        return cnd_errf(CND_EPROTO,
                        "artifact cache %s: more than the %u bytes asked for at %" PRIu64
                        " (HTTP %ld; the range was ignored)",
                        url, len, off, status);
    if (cc != CURLE_OK)
        return cnd_errf(CND_EIO, "artifact cache %s: %s", url, curl_easy_strerror(cc));
    if (status != 206 && !(status == 200 && off == 0))
        return cnd_errf(CND_EIO, "artifact cache %s: HTTP %ld for bytes %s", url, status, range);
    if (sink.got != len)
        return cnd_errf(CND_EPROTO, "artifact cache %s: %zu bytes for a range of %u at %" PRIu64,
                        url, sink.got, len, off);
    return 0;
}
