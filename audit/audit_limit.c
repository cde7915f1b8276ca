/*
 * audit_limit.c: refusals recorded at a bounded rate (see audit_limit.h).
 *
 * Storage: an open-addressing hash table of keys (power-of-two capacity, at least twice
 * max_keys, linear probing) plus one overflow key outside it. Keys are never deleted one by one:
 * a flush that forgets keys rebuilds the table into a second one allocated up front, so probing
 * never meets a tombstone and a flush never allocates. A flush visits every slot, O(capacity),
 * which the daemons do once a second.
 */
#include "audit_limit.h"
#include "audit_actions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int used;
    char action[CND_AUDIT_LIMIT_FIELD];
    char peer[CND_AUDIT_LIMIT_FIELD];
    char reason[CND_AUDIT_LIMIT_FIELD];
    double since;        /* start of the key's window (monotonic seconds) */
    uint64_t recorded;   /* hits recorded in full in this window */
    uint64_t suppressed; /* hits only counted in this window */
} s_key_t;

struct cnd_audit_limiter {
    cnd_audit_t *log;
    char actor[CND_AUDIT_FPR_HEX + 16];
    int burst;
    double window;
    size_t max_keys;
    s_key_t *slot;  /* cap entries */
    s_key_t *spare; /* cap entries: the table a flush rebuilds into */
    size_t cap, n;
    s_key_t overflow; /* refusals beyond max_keys distinct keys */
    cnd_audit_limit_stats_t st;
};

static void s_copy(char *dst, const char *src)
{
    snprintf(dst, CND_AUDIT_LIMIT_FIELD, "%s", src ? src : "");
}

static uint64_t s_hash(const char *a, const char *b, const char *c)
{
    uint64_t h = 1469598103934665603ull;
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        for (size_t k = 0; parts[i][k] && k < CND_AUDIT_LIMIT_FIELD - 1; k++)
            h = (h ^ (uint8_t)parts[i][k]) * 1099511628211ull;
        h = (h ^ 0xffu) * 1099511628211ull; /* separator: ("ab","c") differs from ("a","bc") */
    }
    return h;
}

static int s_same(const s_key_t *k, const char *a, const char *b, const char *c)
{
    return strncmp(k->action, a, CND_AUDIT_LIMIT_FIELD - 1) == 0 &&
           strncmp(k->peer, b, CND_AUDIT_LIMIT_FIELD - 1) == 0 &&
           strncmp(k->reason, c, CND_AUDIT_LIMIT_FIELD - 1) == 0;
}

int cnd_audit_limiter_new(cnd_audit_limiter_t **out, cnd_audit_t *log, const char *actor,
                          const cnd_audit_limit_opts_t *o)
{
    *out = NULL;
    cnd_audit_limit_opts_t d = {0, 0, 0};
    if (!o) o = &d;
    if (!log || !actor) return cnd_errf(CND_EINVAL, "audit limiter: a log and an actor are needed");
    if (o->burst < 0 || o->window_s < 0 || o->max_keys > ((size_t)1 << 24))
        return cnd_errf(CND_EINVAL, "audit limiter: bad option");
    cnd_audit_limiter_t *l = calloc(1, sizeof *l);
    if (!l) return cnd_errf(CND_ENOMEM, "audit limiter: out of memory");
    l->log = log;
    snprintf(l->actor, sizeof l->actor, "%s", actor);
    l->burst = o->burst ? o->burst : 3;
    l->window = o->window_s > 0 ? o->window_s : 60;
    l->max_keys = o->max_keys ? o->max_keys : 1024;
    l->cap = 16;
    while (l->cap < 2 * l->max_keys) l->cap *= 2;
    l->slot = calloc(l->cap, sizeof *l->slot);
    l->spare = calloc(l->cap, sizeof *l->spare);
    if (!l->slot || !l->spare) {
        free(l->slot);
        free(l->spare);
        free(l);
        return cnd_errf(CND_ENOMEM, "audit limiter: out of memory");
    }
    *out = l;
    return 0;
}

void cnd_audit_limiter_destroy(cnd_audit_limiter_t **pl)
{
    if (!pl || !*pl) return;
    free((*pl)->slot);
    free((*pl)->spare);
    free(*pl);
    *pl = NULL;
}

/* The key's slot, created if there is room; NULL when the table holds max_keys keys already. */
static s_key_t *s_find(cnd_audit_limiter_t *l, const char *a, const char *b, const char *c,
                       double now)
{
    size_t i = (size_t)s_hash(a, b, c) & (l->cap - 1);
    for (; l->slot[i].used; i = (i + 1) & (l->cap - 1))
        if (s_same(&l->slot[i], a, b, c)) return &l->slot[i];
    if (l->n >= l->max_keys) return NULL;
    s_key_t *k = &l->slot[i];
    memset(k, 0, sizeof *k);
    k->used = 1;
    s_copy(k->action, a);
    s_copy(k->peer, b);
    s_copy(k->reason, c);
    k->since = now;
    l->n++;
    return k;
}

/* The key's slot, or the overflow key when the table is full. */
static s_key_t *s_key(cnd_audit_limiter_t *l, const char *action, const char *peer,
                      const char *reason, double now)
{
    action = action ? action : "";
    peer = peer ? peer : "";
    reason = reason ? reason : "";
    s_key_t *k = s_find(l, action, peer, reason, now);
    if (!k) {
        k = &l->overflow;
        if (!k->used) {
            k->used = 1;
            s_copy(k->action, action);
            s_copy(k->peer, "*");
            s_copy(k->reason, "too many peers refused");
            k->since = now;
        }
    }
    return k;
}

int cnd_audit_limiter_hit(cnd_audit_limiter_t *l, const char *action, const char *peer,
                          const char *reason, double now)
{
    s_key_t *k = s_key(l, action, peer, reason, now);
    if (k->recorded < (uint64_t)l->burst) {
        k->recorded++;
        l->st.recorded++;
        return 1;
    }
    k->suppressed++;
    l->st.suppressed++;
    return 0;
}

void cnd_audit_limiter_count(cnd_audit_limiter_t *l, const char *action, const char *peer,
                             const char *reason, double now)
{
    s_key(l, action, peer, reason, now)->suppressed++;
    l->st.suppressed++;
}

static int s_summary(cnd_audit_limiter_t *l, const s_key_t *k, double now)
{
    int rc =
        cnd_audit_log_reject_summary(l->log, l->actor, k->action, k->peer, k->reason, k->suppressed,
                                     k->recorded, (int64_t)(now - k->since + 0.5));
    if (!rc) l->st.summaries++;
    return rc;
}

int cnd_audit_limiter_flush(cnd_audit_limiter_t *l, double now, int all)
{
    int first = 0, forget = 0;
    for (size_t i = 0; i < l->cap; i++) {
        s_key_t *k = &l->slot[i];
        if (!k->used || (!all && now - k->since < l->window)) continue;
        if (k->suppressed) {
            int rc = s_summary(l, k, now);
            if (rc && !first) first = rc;
        }
        k->used = 0;
        forget++;
    }
    s_key_t *o = &l->overflow;
    if (o->used && (all || now - o->since >= l->window)) {
        if (o->suppressed) {
            int rc = s_summary(l, o, now);
            if (rc && !first) first = rc;
        }
        o->used = 0;
    }
    if (forget) {
        /* Rebuild the table from the keys that stay, so probe chains have no holes. */
        s_key_t *fresh = l->spare;
        memset(fresh, 0, l->cap * sizeof *fresh);
        l->n = 0;
        for (size_t i = 0; i < l->cap; i++) {
            const s_key_t *k = &l->slot[i];
            if (!k->used) continue;
            size_t j = (size_t)s_hash(k->action, k->peer, k->reason) & (l->cap - 1);
            while (fresh[j].used) j = (j + 1) & (l->cap - 1);
            fresh[j] = *k;
            l->n++;
        }
        l->spare = l->slot;
        l->slot = fresh;
    }
    return first;
}

void cnd_audit_limiter_stats(const cnd_audit_limiter_t *l, cnd_audit_limit_stats_t *out)
{
    *out = l->st;
}
