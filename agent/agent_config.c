/*
 * agent_config.c: see agent_config.h. inih calls s_handler once per key; the first problem is
 * recorded with its line and parsing stops there.
 */
#include "agent_config.h"
#include "identity.h"
#include "onnx_graph.h"

#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    cnd_agent_config_t *c;
    char dir[CND_AGENT_PATH_MAX]; /* directory of the config file */
    int line;                     /* line being parsed (inih counts them for us on error) */
    int rc;                       /* first error */
    char err[512];
    int have_pk;
} s_ctx_t;

/* Returns nonzero when the path does not fit. */
static int s_path(char *dst, size_t cap, const char *dir, const char *v)
{
    int n =
        v[0] == '/' || !dir[0] ? snprintf(dst, cap, "%s", v) : snprintf(dst, cap, "%s/%s", dir, v);
    return n < 0 || (size_t)n >= cap;
}

static int s_fail(s_ctx_t *x, const char *sec, const char *key, const char *what)
{
    if (!x->rc) {
        x->rc = CND_EINVAL;
        snprintf(x->err, sizeof x->err, "[%s] %s: %s", sec, key, what);
    }
    return 0; /* stop parsing */
}

/* Resolves the file names inside a data spec (compress/data.h) against the config's
 * directory: idx:A,B  csv:P[,OPTIONS]  folder:DIR[,OPTIONS]  fmnist:DIR; "fmnist" alone stays
 * as it is. */
static int s_data_spec(char *dst, size_t cap, const char *dir, const char *v)
{
    char a[CND_AGENT_PATH_MAX], b[CND_AGENT_PATH_MAX];
    int n;
    if (strncmp(v, "idx:", 4) == 0) {
        const char *comma = strchr(v + 4, ',');
        if (!comma) {
            n = snprintf(dst, cap, "%s", v);
        } else {
            char first[CND_AGENT_PATH_MAX];
            snprintf(first, sizeof first, "%.*s", (int)(comma - v - 4), v + 4);
            if (s_path(a, sizeof a, dir, first)) return -1;
            if (s_path(b, sizeof b, dir, comma + 1)) return -1;
            n = snprintf(dst, cap, "idx:%s,%s", a, b);
        }
    } else if (strncmp(v, "csv:", 4) == 0) {
        const char *comma = strchr(v + 4, ',');
        char first[CND_AGENT_PATH_MAX];
        snprintf(first, sizeof first, "%.*s", comma ? (int)(comma - v - 4) : (int)strlen(v + 4),
                 v + 4);
        if (s_path(a, sizeof a, dir, first)) return -1;
        n = snprintf(dst, cap, "csv:%s%s", a, comma ? comma : "");
    } else if (strncmp(v, "folder:", 7) == 0) {
        const char *comma = strchr(v + 7, ',');
        char first[CND_AGENT_PATH_MAX];
        snprintf(first, sizeof first, "%.*s", comma ? (int)(comma - v - 7) : (int)strlen(v + 7),
                 v + 7);
        if (s_path(a, sizeof a, dir, first)) return -1;
        n = snprintf(dst, cap, "folder:%s%s", a, comma ? comma : "");
    } else if (strncmp(v, "fmnist:", 7) == 0) {
        if (s_path(a, sizeof a, dir, v + 7)) return -1;
        n = snprintf(dst, cap, "fmnist:%s", a);
    } else {
        n = snprintf(dst, cap, "%s", v);
    }
    return n < 0 || (size_t)n >= cap;
}

static int s_num(const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !isfinite(d) || d < lo || d > hi) return -1;
    *out = d;
    return 0;
}

/* One key of [privacy] (agent_config.h). Returns as s_handler. */
static int s_privacy(s_ctx_t *x, const char *key, const char *v)
{
    double d;
    if (strcmp(key, "max_epsilon_job") == 0 || strcmp(key, "max_epsilon_total") == 0) {
        if (s_num(v, 0, 1e6, &d) || !(d > 0))
            return s_fail(x, "privacy", key, "an epsilon in (0, 1e6]");
        *(strcmp(key, "max_epsilon_job") == 0 ? &x->c->max_eps_job : &x->c->max_eps_total) = d;
    } else if (strcmp(key, "max_delta") == 0) {
        if (s_num(v, 0, 0.01, &d) || !(d > 0))
            return s_fail(x, "privacy", key, "a delta in (0, 0.01]");
        x->c->max_delta = d;
    } else if (strcmp(key, "require_dp") == 0) {
        if (strcmp(v, "true") && strcmp(v, "false"))
            return s_fail(x, "privacy", key, "true or false");
        x->c->require_dp = strcmp(v, "true") == 0;
    } else {
        return s_fail(x, "privacy", key, "unknown key");
    }
    return 1;
}

static int s_handler(void *user, const char *sec, const char *key, const char *v)
{
    s_ctx_t *x = user;
    cnd_agent_config_t *c = x->c;
    double d;
    if (x->rc) return 0;
    if (strcmp(sec, "site") == 0) {
        if (strcmp(key, "name") == 0) {
            if (strlen(v) < 1 || strlen(v) > 63) return s_fail(x, sec, key, "1..63 characters");
            snprintf(c->name, sizeof c->name, "%s", v);
        } else if (strcmp(key, "data") == 0) {
            if (!v[0]) return s_fail(x, sec, key, "empty");
            if (s_data_spec(c->data, sizeof c->data, x->dir, v))
                return s_fail(x, sec, key, "too long");
        } else if (strcmp(key, "validation") == 0) {
            if (s_num(v, 0, 0.9, &d)) return s_fail(x, sec, key, "a fraction in [0, 0.9]");
            c->validation = d;
        } else if (strcmp(key, "state") == 0) {
            if (s_path(c->state, sizeof c->state, x->dir, v))
                return s_fail(x, sec, key, "path too long");
        } else if (strcmp(key, "work") == 0) {
            if (s_path(c->work, sizeof c->work, x->dir, v))
                return s_fail(x, sec, key, "path too long");
        } else {
            return s_fail(x, sec, key, "unknown key");
        }
    } else if (strcmp(sec, "identity") == 0) {
        char *dst = strcmp(key, "key") == 0           ? c->key
                    : strcmp(key, "certificate") == 0 ? c->certificate
                    : strcmp(key, "audit_key") == 0   ? c->audit_key
                                                      : NULL;
        if (!dst) return s_fail(x, sec, key, "unknown key");
        if (s_path(dst, CND_AGENT_PATH_MAX, x->dir, v)) return s_fail(x, sec, key, "path too long");
    } else if (strcmp(sec, "coordinator") == 0) {
        if (strcmp(key, "endpoint") == 0) {
            if (strncmp(v, "tcp://", 6) != 0 && strncmp(v, "ipc://", 6) != 0)
                return s_fail(x, sec, key, "expected tcp://HOST:PORT or ipc://PATH");
            snprintf(c->endpoint, sizeof c->endpoint, "%s", v);
        } else if (strcmp(key, "public_key") == 0) {
            /* 64 hex digits inline, or the path of the coordinator's identity.pub */
            if (cnd_pubkey_parse(c->coordinator_pk, v, "public_key") != 0) {
                char p[CND_AGENT_PATH_MAX];
                if (s_path(p, sizeof p, x->dir, v)) return s_fail(x, sec, key, "path too long");
                if (cnd_pubkey_read(c->coordinator_pk, p) != 0)
                    return s_fail(x, sec, key,
                                  "neither 64 hex digits nor a readable identity.pub file");
            }
            cnd_err_clear();
            x->have_pk = 1;
        } else if (strcmp(key, "ca_cert") == 0 || strcmp(key, "ca_crl") == 0) {
            char *dst = strcmp(key, "ca_cert") == 0 ? c->ca_cert : c->ca_crl;
            if (s_path(dst, CND_AGENT_PATH_MAX, x->dir, v))
                return s_fail(x, sec, key, "path too long");
        } else {
            return s_fail(x, sec, key, "unknown key");
        }
    } else if (strcmp(sec, "teachers") == 0) {
        size_t kl = strlen(key);
        if (kl > 11 && strcmp(key + kl - 11, ".preprocess") == 0) {
            cnd_onnx_prep_t prep;
            int t = 0;
            while (t < c->n_teachers && (strlen(c->teacher_name[t]) != kl - 11 ||
                                         strncmp(c->teacher_name[t], key, kl - 11) != 0))
                t++;
            if (t == c->n_teachers) return s_fail(x, sec, key, "no teacher of that name before it");
            if (!cnd_onnx_is_onnx(c->teacher_path[t]))
                return s_fail(x, sec, key, "only an .onnx teacher takes a preprocessing spec");
            if (c->teacher_prep[t][0]) return s_fail(x, sec, key, "set twice");
            if (strlen(v) >= sizeof c->teacher_prep[t] || cnd_onnx_prep_parse(&prep, v)) {
                char why[300];
                snprintf(why, sizeof why, "%s",
                         strlen(v) >= 256 ? "longer than 255 characters" : cnd_err_detail());
                return s_fail(x, sec, key, why);
            }
            snprintf(c->teacher_prep[t], sizeof c->teacher_prep[t], "%s", v);
            return 1;
        }
        if (c->n_teachers >= CND_AGENT_TEACHERS_MAX)
            return s_fail(x, sec, key, "too many teachers (16 at most)");
        if (strlen(key) > 63) return s_fail(x, sec, key, "name longer than 63 characters");
        snprintf(c->teacher_name[c->n_teachers], 64, "%s", key);
        if (s_path(c->teacher_path[c->n_teachers], CND_AGENT_PATH_MAX, x->dir, v))
            return s_fail(x, sec, key, "path too long");
        c->n_teachers++;
    } else if (strcmp(sec, "limits") == 0) {
        if (strcmp(key, "threads") == 0) {
            if (s_num(v, 1, 64, &d) || d != floor(d)) return s_fail(x, sec, key, "1..64");
            c->threads = (int)d;
        } else if (strcmp(key, "memory_mb") == 0) {
            if (s_num(v, 64, 1e9, &d)) return s_fail(x, sec, key, "at least 64");
            c->memory_mb = (uint64_t)d;
        } else if (strcmp(key, "max_model_mb") == 0) {
            if (s_num(v, 1, 1 << 20, &d)) return s_fail(x, sec, key, "at least 1");
            c->max_model_mb = (uint64_t)d;
        } else {
            return s_fail(x, sec, key, "unknown key");
        }
    } else if (strcmp(sec, "policy") == 0) {
        if (strcmp(key, "max_attempts") == 0) {
            if (s_num(v, 1, 16, &d) || d != floor(d)) return s_fail(x, sec, key, "1..16");
            c->max_attempts = (uint32_t)d;
        } else if (strcmp(key, "lr_min") == 0 || strcmp(key, "lr_max") == 0) {
            if (s_num(v, 1e-12, 1e3, &d) || d <= 0)
                return s_fail(x, sec, key, "a learning rate in (0, 1000]");
            *(strcmp(key, "lr_min") == 0 ? &c->lr_min : &c->lr_max) = d;
        } else if (strcmp(key, "max_epochs") == 0 || strcmp(key, "max_rounds") == 0) {
            if (s_num(v, 1, 1e6, &d) || d != floor(d)) return s_fail(x, sec, key, "1..1000000");
            *(strcmp(key, "max_epochs") == 0 ? &c->max_epochs : &c->max_rounds) = (uint32_t)d;
        } else {
            return s_fail(x, sec, key, "unknown key");
        }
    } else if (strcmp(sec, "privacy") == 0) {
        return s_privacy(x, key, v);
    } else {
        return s_fail(x, sec, key, "unknown section");
    }
    return 1;
}

int cnd_agent_config_load(cnd_agent_config_t *c, const char *path)
{
    memset(c, 0, sizeof *c);
    s_ctx_t x;
    memset(&x, 0, sizeof x);
    x.c = c;
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(x.dir, sizeof x.dir, "%s", path);
    char *slash = strrchr(x.dir, '/');
    if (slash)
        *slash = 0;
    else
        x.dir[0] = 0;
    c->validation = 0.1;
    c->threads = 1;
    c->memory_mb = 4096;
    c->max_model_mb = 256;
    c->max_attempts = 4;
    c->lr_min = 1e-6;
    c->lr_max = 1.0;
    c->max_epochs = 100;
    c->max_rounds = 1000;
    c->max_eps_job = INFINITY;
    c->max_eps_total = INFINITY;
    c->max_delta = 1e-5;
    FILE *f = fopen(path, "r");
    if (!f) return cnd_errf(CND_EIO, "%s: cannot open the agent configuration", path);
    int line = ini_parse_file(f, s_handler, &x);
    fclose(f);
    if (x.rc) return cnd_errf(CND_EINVAL, "%s:%d: %s", path, line, x.err);
    if (line > 0) return cnd_errf(CND_EINVAL, "%s:%d: malformed line", path, line);
    if (line < 0) return cnd_errf(CND_EIO, "%s: cannot read", path);
    const char *miss = !c->name[0]          ? "[site] name"
                       : !c->data[0]        ? "[site] data"
                       : !c->key[0]         ? "[identity] key"
                       : !c->certificate[0] ? "[identity] certificate"
                       : !c->endpoint[0]    ? "[coordinator] endpoint"
                       : !x.have_pk         ? "[coordinator] public_key"
                       : !c->ca_cert[0]     ? "[coordinator] ca_cert"
                       : !c->ca_crl[0]      ? "[coordinator] ca_crl"
                                            : NULL;
    if (miss) return cnd_errf(CND_EINVAL, "%s: %s is required", path, miss);
    for (int t = 0; t < c->n_teachers; t++)
        if (cnd_onnx_is_onnx(c->teacher_path[t]) && !c->teacher_prep[t][0])
            return cnd_errf(CND_EINVAL,
                            "%s: [teachers] %s.preprocess is required for the ONNX teacher %s "
                            "(e.g. \"scale=1/255 mean=0.286 std=0.353\", docs/onnx.md)",
                            path, c->teacher_name[t], c->teacher_path[t]);
    if (c->lr_min > c->lr_max)
        return cnd_errf(CND_EINVAL, "%s: [policy] lr_min %g is above lr_max %g", path, c->lr_min,
                        c->lr_max);
    if (!c->state[0] && s_path(c->state, sizeof c->state, x.dir, "agent.db"))
        return cnd_errf(CND_EINVAL, "%s: path too long", path);
    if (!c->work[0] && s_path(c->work, sizeof c->work, "", x.dir[0] ? x.dir : "."))
        return cnd_errf(CND_EINVAL, "%s: path too long", path);
    for (const char *p = c->name; *p; p++) {
        int ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                 (p > c->name && (*p == '.' || *p == '_' || *p == '-'));
        if (!ok)
            return cnd_errf(CND_EINVAL, "%s: [site] name '%s' is not a valid node name", path,
                            c->name);
    }
    return 0;
}

int cnd_agent_config_policy(const cnd_agent_config_t *c, float lr, uint32_t epochs, uint32_t rounds)
{
    if (!(lr >= c->lr_min && lr <= c->lr_max))
        return cnd_errf(CND_EPERM,
                        "out of this site's policy: learning rate %g outside [%g, %g] ([policy] "
                        "lr_min, lr_max)",
                        (double)lr, c->lr_min, c->lr_max);
    if (epochs > c->max_epochs)
        return cnd_errf(CND_EPERM,
                        "out of this site's policy: %u local epochs, over [policy] max_epochs %u",
                        epochs, c->max_epochs);
    if (rounds > c->max_rounds)
        return cnd_errf(CND_EPERM,
                        "out of this site's policy: %u rounds, over [policy] max_rounds %u", rounds,
                        c->max_rounds);
    return 0;
}

const char *cnd_agent_config_teacher_prep(const cnd_agent_config_t *c, const char *name)
{
    for (int i = 0; i < c->n_teachers; i++)
        if (strcmp(c->teacher_name[i], name) == 0) return c->teacher_prep[i];
    return NULL;
}

const char *cnd_agent_config_teacher(const cnd_agent_config_t *c, const char *name)
{
    for (int i = 0; i < c->n_teachers; i++)
        if (strcmp(c->teacher_name[i], name) == 0) return c->teacher_path[i];
    return NULL;
}
