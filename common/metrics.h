/*
 * metrics.h: a Prometheus metrics endpoint (text exposition format 0.0.4) served with GNU
 * libmicrohttpd, and helpers that write the format.
 *
 * The server answers GET /metrics (and GET / with a pointer to it) from its own thread: each
 * scrape calls the owner's render function, which writes the whole exposition into a buffer.
 * The render function runs on the HTTP thread, so it must only read what is safe to read
 * there: atomics the daemon updates, a snapshot under a mutex, or its own read-only database
 * connection (never the daemon's). Anything else is 404 / 405. At most 16 connections, 10 s
 * timeout each: a slow scraper cannot hold the daemon.
 *
 * Listen address: HOST:PORT with an IPv4 HOST ("localhost" = 127.0.0.1; "0.0.0.0" = all
 * interfaces, which exposes the metrics to the network: say so in the config), PORT 0 = any
 * (cnd_metrics_port tells which).
 */
#ifndef CND_METRICS_H
#define CND_METRICS_H

#include "bytes.h"
#include "error.h"

#include <sqlite3.h>

typedef struct cnd_metrics_server cnd_metrics_server_t;

/* Writes the exposition into out; returns 0 or an error (the scrape gets 500). */
typedef int (*cnd_metrics_render_fn)(void *ctx, cnd_buf_t *out);

CND_MUST_USE int cnd_metrics_listen(cnd_metrics_server_t **out, const char *addr,
                                    cnd_metrics_render_fn render, void *ctx);
int cnd_metrics_port(const cnd_metrics_server_t *s);
/* Stops the server (waits for its thread); NULL-safe; sets *s to NULL. */
void cnd_metrics_stop(cnd_metrics_server_t **s);

/* "# HELP name help\n# TYPE name type\n" (type: "counter" or "gauge"). */
void cnd_metrics_head(cnd_buf_t *b, const char *name, const char *type, const char *help);
/* One sample: name{labels} value. labels: NULL, or up to 3 key/value pairs (values escaped). */
void cnd_metrics_val(cnd_buf_t *b, const char *name, double v);
void cnd_metrics_val1(cnd_buf_t *b, const char *name, const char *k, const char *v, double x);
void cnd_metrics_val2(cnd_buf_t *b, const char *name, const char *k1, const char *v1,
                      const char *k2, const char *v2, double x);

/* One "SELECT label, value" query as a labelled family (head written even with no rows). */
CND_MUST_USE int cnd_metrics_grouped(cnd_buf_t *b, sqlite3 *db, const char *sql, const char *name,
                                     const char *type, const char *help, const char *label);
/* Opens the database at path read-only (what names it in errors), lets fn write its families,
 * then writes condenser_database_bytes{file="db"|"wal"}: the sizes of the file and its
 * write-ahead log. Returns 0 or the error of the open or of fn. */
CND_MUST_USE int cnd_metrics_from_db(cnd_buf_t *out, const char *path, const char *what,
                                     int (*fn)(cnd_buf_t *b, sqlite3 *db));

#endif
