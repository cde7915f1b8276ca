/* metrics.c: see metrics.h. */
#include "metrics.h"
#include "db.h"

#include <arpa/inet.h>
#include <math.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct cnd_metrics_server {
    struct MHD_Daemon *mhd;
    cnd_metrics_render_fn render;
    void *ctx;
    int port;
};

static enum MHD_Result s_reply(struct MHD_Connection *c, unsigned status, const char *type,
                               void *body, size_t len, int own)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, own ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (own) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result s_handle(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_len, void **state)
{
    (void)version;
    (void)upload;
    cnd_metrics_server_t *s = cls;
    static char text[] = "text/plain; charset=utf-8";
    if (*upload_len) return MHD_NO; /* no request bodies */
    if (!*state) {
        *state = s; /* first call for this request: headers only */
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static char msg[] = "only GET\n";
        return s_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, text, msg, sizeof msg - 1, 0);
    }
    if (strcmp(url, "/") == 0) {
        static char msg[] = "Condenser metrics: /metrics\n";
        return s_reply(c, MHD_HTTP_OK, text, msg, sizeof msg - 1, 0);
    }
    if (strcmp(url, "/metrics") != 0) {
        static char msg[] = "not found: the metrics are at /metrics\n";
        return s_reply(c, MHD_HTTP_NOT_FOUND, text, msg, sizeof msg - 1, 0);
    }
    cnd_buf_t b;
    cnd_buf_init(&b);
    int rc = s->render(s->ctx, &b);
    if (rc || b.err) {
        cnd_buf_free(&b);
        char *msg = malloc(600);
        if (!msg) return MHD_NO;
        snprintf(msg, 600, "metrics unavailable: %s\n", rc ? cnd_err_detail() : "out of memory");
        cnd_err_clear();
        return s_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, text, msg, strlen(msg), 1);
    }
    return s_reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, 1);
}

static int s_parse_addr(struct sockaddr_in *sa, const char *addr)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host)
        return cnd_errf(CND_EINVAL, "metrics address '%s': expected HOST:PORT", addr);
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535)
        return cnd_errf(CND_EINVAL, "metrics address '%s': bad port", addr);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return cnd_errf(CND_EINVAL, "metrics address '%s': '%s' is not an IPv4 address", addr,
                        host);
    return 0;
}

int cnd_metrics_listen(cnd_metrics_server_t **out, const char *addr, cnd_metrics_render_fn render,
                       void *ctx)
{
    *out = NULL;
    struct sockaddr_in sa;
    int rc = s_parse_addr(&sa, addr);
    if (rc) return rc;
    cnd_metrics_server_t *s = calloc(1, sizeof *s);
    if (!s) return cnd_errf(CND_ENOMEM, "metrics: out of memory");
    s->render = render;
    s->ctx = ctx;
    s->mhd =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, s_handle, s,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)16, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!s->mhd) {
        free(s);
        return cnd_errf(CND_EIO,
                        "metrics: cannot listen on %s (in use, or not an address of this "
                        "machine)",
                        addr);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? (int)di->port : (int)ntohs(sa.sin_port);
    *out = s;
    return 0;
}

int cnd_metrics_port(const cnd_metrics_server_t *s)
{
    return s ? s->port : 0;
}

void cnd_metrics_stop(cnd_metrics_server_t **s)
{
    if (!s || !*s) return;
    MHD_stop_daemon((*s)->mhd);
    free(*s);
    *s = NULL;
}

void cnd_metrics_head(cnd_buf_t *b, const char *name, const char *type, const char *help)
{
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    cnd_buf_put(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* A label value with \, " and newlines escaped. */
static void s_label(cnd_buf_t *b, const char *k, const char *v)
{
    cnd_buf_put(b, k, strlen(k));
    cnd_buf_put(b, "=\"", 2);
    for (const char *p = v; *p; p++) {
        if (*p == '\\' || *p == '"')
            cnd_buf_put(b, "\\", 1), cnd_buf_put(b, p, 1);
        else if (*p == '\n')
            cnd_buf_put(b, "\\n", 2);
        else
            cnd_buf_put(b, p, 1);
    }
    cnd_buf_put(b, "\"", 1);
}

static void s_value(cnd_buf_t *b, double v)
{
    char num[64];
    int n = isnan(v)   ? snprintf(num, sizeof num, " NaN\n")
            : isinf(v) ? snprintf(num, sizeof num, " %sInf\n", v < 0 ? "-" : "+")
            : v == (double)(long long)v && fabs(v) < 9e15
                ? snprintf(num, sizeof num, " %lld\n", (long long)v)
                : snprintf(num, sizeof num, " %.17g\n", v);
    cnd_buf_put(b, num, (size_t)n);
}

void cnd_metrics_val(cnd_buf_t *b, const char *name, double v)
{
    cnd_buf_put(b, name, strlen(name));
    s_value(b, v);
}

void cnd_metrics_val1(cnd_buf_t *b, const char *name, const char *k, const char *v, double x)
{
    cnd_buf_put(b, name, strlen(name));
    cnd_buf_put(b, "{", 1);
    s_label(b, k, v);
    cnd_buf_put(b, "}", 1);
    s_value(b, x);
}

void cnd_metrics_val2(cnd_buf_t *b, const char *name, const char *k1, const char *v1,
                      const char *k2, const char *v2, double x)
{
    cnd_buf_put(b, name, strlen(name));
    cnd_buf_put(b, "{", 1);
    s_label(b, k1, v1);
    cnd_buf_put(b, ",", 1);
    s_label(b, k2, v2);
    cnd_buf_put(b, "}", 1);
    s_value(b, x);
}

int cnd_metrics_grouped(cnd_buf_t *b, sqlite3 *db, const char *sql, const char *name,
                        const char *type, const char *help, const char *label)
{
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st, sql);
    if (rc) return rc;
    cnd_metrics_head(b, name, type, help);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        cnd_metrics_val1(b, name, label, v ? v : "", sqlite3_column_double(st, 1));
    }
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? 0 : cnd_db_err(db, name);
}

static double s_file_bytes(const char *path, const char *suffix)
{
    char p[1100];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    struct stat sb;
    return stat(p, &sb) == 0 ? (double)sb.st_size : 0;
}

int cnd_metrics_from_db(cnd_buf_t *out, const char *path, const char *what,
                        int (*fn)(cnd_buf_t *b, sqlite3 *db))
{
    sqlite3 *db = NULL;
    int rc = cnd_db_open(&db, path, CND_DB_READONLY, what);
    if (!rc) rc = fn(out, db);
    cnd_db_close(&db);
    if (rc) return rc;
    cnd_metrics_head(out, "condenser_database_bytes", "gauge",
                     "Size of the database file and its write-ahead log.");
    cnd_metrics_val1(out, "condenser_database_bytes", "file", "db", s_file_bytes(path, ""));
    cnd_metrics_val1(out, "condenser_database_bytes", "file", "wal", s_file_bytes(path, "-wal"));
    return 0;
}
