/* log.c: see log.h. */
#include "log.h"
#include "clock.h"
#include "error.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_int s_level = CND_LOG_INFO;

static _Thread_local struct {
    int64_t job;
    uint32_t round;
    char peer[80];
} s_scope;

int cnd_log_level_parse(cnd_log_level_t *out, const char *text)
{
    static const struct {
        const char *name;
        cnd_log_level_t level;
    } names[] = {{"error", CND_LOG_ERROR},
                 {"warn", CND_LOG_WARN},
                 {"warning", CND_LOG_WARN},
                 {"info", CND_LOG_INFO},
                 {"debug", CND_LOG_DEBUG}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (text && strcmp(text, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    return cnd_errf(CND_EINVAL, "log level '%s': expected error, warn, info or debug",
                    text ? text : "");
}

const char *cnd_log_level_name(cnd_log_level_t level)
{
    switch (level) {
    case CND_LOG_ERROR: return "error";
    case CND_LOG_WARN: return "warn";
    case CND_LOG_INFO: return "info";
    case CND_LOG_DEBUG: return "debug";
    }
    return "info";
}

void cnd_log_set_level(cnd_log_level_t level)
{
    atomic_store(&s_level, (int)level);
}

cnd_log_level_t cnd_log_get_level(void)
{
    return (cnd_log_level_t)atomic_load(&s_level);
}

void cnd_log_scope(int64_t job, uint32_t round, const char *peer)
{
    s_scope.job = job;
    s_scope.round = round;
    snprintf(s_scope.peer, sizeof s_scope.peer, "%s", peer ? peer : "");
    for (char *p = s_scope.peer; *p; p++) /* a name is one word in the line */
        if ((unsigned char)*p <= ' ' || *p == '=') *p = '_';
}

cnd_log_level_t cnd_log_level_of(const char *s)
{
    if (strncmp(s, "error: ", 7) == 0) return CND_LOG_ERROR;
    if (strncmp(s, "warning: ", 9) == 0) return CND_LOG_WARN;
    if (strncmp(s, "debug: ", 7) == 0) return CND_LOG_DEBUG;
    return CND_LOG_INFO;
}

size_t cnd_log_format(char *out, size_t cap, int journal, int64_t t, const char *component,
                      const char *sentence)
{
    if (cap == 0) return 0;
    cnd_log_level_t lv = cnd_log_level_of(sentence);
    size_t n = 0;
#define S_PUT(...)                                                                                 \
    do {                                                                                           \
        int k_ = snprintf(out + n, cap - n, __VA_ARGS__);                                          \
        if (k_ > 0) n += (size_t)k_ < cap - n ? (size_t)k_ : cap - n - 1;                          \
    } while (0)
    if (journal) {
        S_PUT("<%d>%s", (int)lv, component);
    } else {
        char ts[32];
        S_PUT("%s %s %s", cnd_iso8601(ts, t), cnd_log_level_name(lv), component);
    }
    if (s_scope.job > 0) S_PUT(" job=%lld", (long long)s_scope.job);
    if (s_scope.round > 0) S_PUT(" round=%u", s_scope.round);
    if (s_scope.peer[0]) S_PUT(" peer=%s", s_scope.peer);
    size_t body = n + 2;
    S_PUT(": %s", sentence);
    for (size_t i = body < n ? body : n; i < n; i++)
        if ((unsigned char)out[i] < 0x20) out[i] = ' ';
    if (n + 1 < cap) {
        out[n++] = '\n';
        out[n] = 0;
    } else {
        out[cap - 2] = '\n'; /* cut: still one line */
        out[cap - 1] = 0;
        n = cap - 1;
    }
#undef S_PUT
    return n;
}

int cnd_log_stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2) return 0;
    if (fstat(STDERR_FILENO, &st) != 0) return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void cnd_log_emit(void *ctx, const char *sentence)
{
    if ((int)cnd_log_level_of(sentence) > atomic_load(&s_level)) return;
    static int journal = -1;
    if (journal < 0) journal = cnd_log_stderr_is_journal();
    char line[2048];
    size_t n = cnd_log_format(line, sizeof line, journal, cnd_unix_time(),
                              ctx ? (const char *)ctx : "condenser", sentence);
    fwrite(line, 1, n, stderr);
    fflush(stderr);
}
