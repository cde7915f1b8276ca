/*
 * edge_http.h: the device's artifact cache client (issue 20): HTTP(S) range requests with
 * libcurl, for cnd_edge_set_fetch(). The cache is untrusted like the server that names it: the
 * edge core checks every byte against the signed manifest. This client only bounds what a cache
 * can make the device do: exact lengths (a longer body is cut off and refused), http and https
 * only (redirects too, at most 3), connect and transfer timeouts, no cookies or credentials.
 */
#ifndef CND_EDGE_HTTP_H
#define CND_EDGE_HTTP_H

#include <stdint.h>

typedef struct cnd_edge_http cnd_edge_http_t;

/* Returns 0 and a client (one connection reused across requests), or CND_ENOMEM / CND_EIO. */
int cnd_edge_http_new(cnd_edge_http_t **out);
void cnd_edge_http_free(cnd_edge_http_t **h);

/* A cnd_edge_fetch_fn: GET url with "Range: bytes=off-(off+len-1)"; 0 when exactly len bytes
 * came back with status 206 (or 200 for a whole object of exactly len bytes at off 0).
 * Otherwise CND_EIO (connection, timeout, status) or CND_EPROTO (wrong length, ignored range),
 * the detail naming the URL and what was wrong. */
int cnd_edge_http_fetch(void *h, const char *url, uint64_t off, uint32_t len, uint8_t *out);

#endif
