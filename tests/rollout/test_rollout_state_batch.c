/*
 * test_rollout_state_batch.c URL: the PostgreSQL back end's batched device rows
 * (rollout_state_pg.c), against the server test_rollout_pg.sh started. Inside a transaction
 * device_put only queues the row; the queue is written in one statement before the next
 * statement or the commit. Checks: a device put twice in one batch ends with its last row, once;
 * a read inside the transaction sees the queued rows; text with quotes, backslashes, commas and
 * braces and a previous digest survive the array encoding byte for byte; a rollback discards
 * the queue; a row with text that is not UTF-8 is refused alone and its neighbours are written;
 * outside a transaction a row is written at once; every written row has a new change number.
 * Uses rollout id 9999 only, so the script's own rollouts are untouched.
 */
#include "check.h"
#include "rollout_state.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_ROLLOUT 9999

static cnd_rdevice_t s_row(const char *name, cnd_rdevice_state_t st, const char *reason)
{
    cnd_rdevice_t r;
    memset(&r, 0, sizeof r);
    r.rollout = S_ROLLOUT;
    snprintf(r.device, sizeof r.device, "%s", name);
    r.wave = 1;
    r.artifact = 7;
    r.state = st;
    snprintf(r.reason, sizeof r.reason, "%s", reason);
    r.offered_ms = 11;
    r.updated_ms = 22;
    r.latency_us = 33;
    return r;
}

/* The rows of rollout S_ROLLOUT (caller frees), NULL on error. */
static cnd_rdevice_t *s_rows(cnd_rstate_t *st, size_t *n)
{
    cnd_rdevice_t *rows = NULL;
    int rc = cnd_rstate_devices(st, S_ROLLOUT, &rows, n);
    if (rc) fprintf(stderr, "devices: %s\n", cnd_err_detail());
    CHECK_EQ_INT(rc, 0);
    return rows;
}

static const cnd_rdevice_t *s_find(const cnd_rdevice_t *rows, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].device, name) == 0) return &rows[i];
    return NULL;
}

static void s_batch(cnd_rstate_t *st)
{
    const char *odd = "q\"uote \\back, {brace} 'single' NULL";
    cnd_rdevice_t a1 = s_row("dev-a", CND_RDEV_PENDING, "first");
    cnd_rdevice_t a2 = s_row("dev-a", CND_RDEV_OFFERED, "second");
    cnd_rdevice_t b = s_row("dev-b", CND_RDEV_PENDING, "");
    cnd_rdevice_t c = s_row("dev-c", CND_RDEV_FAILED, odd);
    c.has_prev = 1;
    for (int i = 0; i < 32; i++) c.prev_digest[i] = (uint8_t)(0xf0 ^ i);
    cnd_rdevice_t bad = s_row("dev-bad", CND_RDEV_PENDING, "\xff\xfe not UTF-8");
    CHECK_EQ_INT(cnd_rstate_begin(st), 0);
    CHECK_EQ_INT(cnd_rstate_device_put(st, &a1), 0);
    CHECK_EQ_INT(cnd_rstate_device_put(st, &b), 0);
    CHECK_EQ_INT(cnd_rstate_device_put(st, &a2), 0); /* same device, same batch */
    CHECK_EQ_INT(cnd_rstate_device_put(st, &bad), CND_EINVAL);
    CHECK_EQ_INT(cnd_rstate_device_put(st, &c), 0);
    size_t n = 0;
    cnd_rdevice_t *rows = s_rows(st, &n); /* inside the transaction: the queue is written */
    CHECK_EQ_INT((int)n, 3);
    const cnd_rdevice_t *r = s_find(rows, n, "dev-a");
    CHECK(r && r->state == CND_RDEV_OFFERED && strcmp(r->reason, "second") == 0);
    free(rows);
    b.state = CND_RDEV_HEALTHY; /* a second batch in the same transaction */
    CHECK_EQ_INT(cnd_rstate_device_put(st, &b), 0);
    CHECK_EQ_INT(cnd_rstate_commit(st), 0);
    rows = s_rows(st, &n);
    CHECK_EQ_INT((int)n, 3);
    r = s_find(rows, n, "dev-b");
    CHECK(r && r->state == CND_RDEV_HEALTHY && !r->has_prev && r->latency_us == 33);
    r = s_find(rows, n, "dev-c");
    CHECK(r && strcmp(r->reason, odd) == 0 && r->has_prev &&
          memcmp(r->prev_digest, c.prev_digest, 32) == 0 && r->offered_ms == 11 &&
          r->updated_ms == 22 && r->wave == 1 && r->artifact == 7);
    CHECK(s_find(rows, n, "dev-bad") == NULL);
    free(rows);
}

static void s_rollback_and_direct(cnd_rstate_t *st)
{
    int64_t before = 0, after = 0;
    CHECK_EQ_INT(cnd_rstate_device_changes(st, 0, NULL, NULL, &before), 0);
    cnd_rdevice_t d = s_row("dev-d", CND_RDEV_PENDING, "never");
    CHECK_EQ_INT(cnd_rstate_begin(st), 0);
    CHECK_EQ_INT(cnd_rstate_device_put(st, &d), 0);
    cnd_rstate_rollback(st);
    size_t n = 0;
    cnd_rdevice_t *rows = s_rows(st, &n);
    CHECK(s_find(rows, n, "dev-d") == NULL);
    free(rows);
    cnd_rdevice_t e = s_row("dev-e", CND_RDEV_HEALTHY, "direct");
    CHECK_EQ_INT(cnd_rstate_device_put(st, &e), 0); /* no transaction: written at once */
    rows = s_rows(st, &n);
    CHECK(s_find(rows, n, "dev-e") != NULL && n == 4);
    free(rows);
    CHECK_EQ_INT(cnd_rstate_device_changes(st, 0, NULL, NULL, &after), 0);
    CHECK(after > before);
    cnd_rdevice_t *chg = NULL;
    CHECK_EQ_INT(cnd_rstate_device_changes(st, before, &chg, &n, &after), 0);
    CHECK_EQ_INT((int)n, 1); /* only dev-e changed since */
    CHECK(n == 1 && strcmp(chg[0].device, "dev-e") == 0);
    free(chg);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_rollout_state_batch POSTGRESQL_URL\n");
        return 2;
    }
    if (sodium_init() < 0) return 1;
    sqlite3 *local = NULL;
    CHECK(sqlite3_open(":memory:", &local) == SQLITE_OK);
    cnd_rstate_t *st = NULL;
    int rc = cnd_rstate_open(&st, argv[1], local);
    if (rc) fprintf(stderr, "open: %s\n", cnd_err_detail());
    CHECK_EQ_INT(rc, 0);
    if (st) {
        s_batch(st);
        s_rollback_and_direct(st);
    }
    cnd_rstate_close(&st);
    sqlite3_close(local);
    return check_result("test_rollout_state_batch");
}
