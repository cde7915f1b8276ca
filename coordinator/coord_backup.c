/*
 * coord_backup.c: `condenser coordinator backup|restore`.
 *
 * backup copies the coordinator's database (state, audit log and rollout engine: one file) with
 * SQLite's online backup API while the coordinator and rollout server keep running (a WAL
 * reader: they are not blocked), checks the copy (integrity, its audit log verified against
 * this coordinator's key), gives it its name, and signs its SHA-256 with the coordinator's key
 * into FILE.sig ("condenser-backup-v1 <sha256 hex> <signature hex>", context
 * "coordinator-backup"). Keys are not in it: identity.key is backed up separately, by the
 * operator's key policy.
 *
 * restore puts a backup back: only while no daemon holds the directory (DIR/daemon.lock), only a
 * backup whose bytes are the ones THIS coordinator signed (a changed byte anywhere, a backup of
 * another coordinator or one without its .sig is refused), whose integrity holds, that is a
 * coordinator database this program can read, and whose audit log verifies against this
 * coordinator's key. The database it replaces is first saved
 * beside it (coordinator.db.pre-restore-<unix time>), so a restore loses nothing; the
 * replacement is one SQLite transaction (a kill leaves the old database). The restored log gets
 * an admin.coordinator.restore entry naming the backup.
 */
#include "audit_verify.h"
#include "cli.h"
#include "clock.h"
#include "coord_admin.h"
#include "db.h"
#include "fileio.h"
#include "json.h"
#include "sign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char s_dir_help[] = "coordinator directory (default $CND_COORDINATOR_DIR or .)";
static const char s_sig_context[] = "coordinator-backup";
static const char s_sig_magic[] = "condenser-backup-v1";

/* SHA-256 of the file at path, read in 1 MiB pieces. */
static int s_file_digest(const char *path, uint8_t out[32])
{
    FILE *f = fopen(path, "rb");
    if (!f) return cnd_errf(CND_EIO, "%s: cannot open: %s", path, strerror(errno));
    cnd_sha256_t *h = cnd_sha256_new();
    uint8_t *buf = malloc(1 << 20);
    int rc = 0;
    if (!h || !buf) rc = cnd_errf(CND_ENOMEM, "%s: out of memory", path);
    size_t n;
    while (!rc && (n = fread(buf, 1, 1 << 20, f)) > 0) cnd_sha256_update(h, buf, n);
    if (!rc && ferror(f)) rc = cnd_errf(CND_EIO, "%s: read error", path);
    if (!rc) cnd_sha256_final(h, out);
    cnd_sha256_destroy(&h);
    free(buf);
    fclose(f);
    return rc;
}

/* Writes FILE.sig: the backup's digest signed with the coordinator's key. */
static int s_sign_backup(const char *path, const cnd_identity_t *id)
{
    uint8_t d[32], sig[CND_SIG_BYTES];
    int rc = s_file_digest(path, d);
    if (!rc) rc = cnd_sign_digest(sig, id, s_sig_context, d);
    if (rc) return rc;
    char hd[65], hs[2 * CND_SIG_BYTES + 1], sp[4200], line[256];
    snprintf(sp, sizeof sp, "%s.sig", path);
    int n = snprintf(line, sizeof line, "%s %s %s\n", s_sig_magic, cnd_hex(hd, d, 32),
                     cnd_hex(hs, sig, CND_SIG_BYTES));
    return cnd_file_write_atomic(sp, line, (size_t)n, 0600);
}

/* Checks FILE.sig against the file's bytes and the coordinator's key pk. */
static int s_check_signature(const char *path, const uint8_t *pk)
{
    char sp[4200];
    snprintf(sp, sizeof sp, "%s.sig", path);
    uint8_t *t = NULL, d[32], want[32], sig[CND_SIG_BYTES];
    size_t n = 0;
    if (!cnd_file_exists(path)) return cnd_errf(CND_ENOTFOUND, "%s: no such backup file", path);
    if (!cnd_file_exists(sp))
        return cnd_errf(CND_ENOTFOUND,
                        "%s: no signature file %s: only a backup made by `coordinator backup` "
                        "(which signs it) can be restored",
                        path, sp);
    int rc = cnd_file_read(sp, 1024, &t, &n);
    if (rc) return rc;
    char hd[65] = "", hs[2 * CND_SIG_BYTES + 1] = "", magic[32] = "";
    if (sscanf((const char *)t, "%31s %64s %128s", magic, hd, hs) != 3 ||
        strcmp(magic, s_sig_magic) != 0 || cnd_unhex(want, 32, hd) != 0 ||
        cnd_unhex(sig, CND_SIG_BYTES, hs) != 0)
        rc = cnd_errf(CND_EFORMAT, "%s: not a backup signature (\"%s <sha256> <signature>\")", sp,
                      s_sig_magic);
    free(t);
    if (rc) return rc;
    if ((rc = s_file_digest(path, d))) return rc;
    if (memcmp(d, want, 32) != 0)
        return cnd_errf(CND_ECORRUPT,
                        "%s: its SHA-256 is not the one signed in %s: the backup was changed or "
                        "damaged since it was made",
                        path, sp);
    if (cnd_verify_digest(sig, pk, s_sig_context, d) != 0)
        return cnd_errf(CND_ECRYPTO,
                        "%s: not signed by this coordinator's key (a backup of another "
                        "coordinator, or a forged signature)",
                        sp);
    return 0;
}

/* Verifies the audit log in the database file `path` against pk; *entries its size. */
static int s_verify_file(const char *path, const uint8_t *pk, uint64_t *entries, const char *what)
{
    cnd_audit_t *log = NULL;
    int rc = cnd_audit_open_readonly(&log, path);
    if (rc) return cnd_err_wrap(rc, "%s: %s", path, what);
    cnd_audit_verdict_t v;
    memset(&v, 0, sizeof v);
    rc = cnd_audit_verify(&v, log, pk, NULL, NULL, 0, NULL, NULL);
    if (!rc && !v.ok)
        rc = cnd_errf(CND_ECORRUPT,
                      "%s: %s: the audit log does not verify against this "
                      "coordinator's key: %s",
                      path, what, v.summary);
    *entries = v.entries;
    cnd_audit_verdict_free(&v);
    cnd_audit_close(&log);
    return rc;
}

static void s_print(int json, const char *verb, const char *file, uint64_t bytes, int pages,
                    uint64_t entries, double secs, const char *saved)
{
    if (!json) {
        printf("%s %s: %llu bytes, audit log of %llu entries verified, %.2f s\n", verb, file,
               (unsigned long long)bytes, (unsigned long long)entries, secs);
        if (saved) printf("the database it replaced is kept at %s\n", saved);
        return;
    }
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "file");
    cnd_jw_str(&w, file);
    cnd_jw_key(&w, "bytes");
    cnd_jw_int(&w, (int64_t)bytes);
    if (pages > 0) {
        cnd_jw_key(&w, "pages");
        cnd_jw_int(&w, pages);
    }
    cnd_jw_key(&w, "audit_entries");
    cnd_jw_int(&w, (int64_t)entries);
    cnd_jw_key(&w, "audit_ok");
    cnd_jw_bool(&w, 1);
    cnd_jw_key(&w, "seconds");
    cnd_jw_double(&w, secs);
    if (saved) {
        cnd_jw_key(&w, "previous");
        cnd_jw_str(&w, saved);
    }
    cnd_jw_obj_end(&w);
    const char *t = cnd_jw_text(&w);
    if (t) printf("%s\n", t);
    cnd_jw_free(&w);
}

static uint64_t s_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

int cnd_coord_cmd_backup(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir(), *out = NULL;
    int json = 0;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
                              {"out", CND_OPT_STR, &out, "FILE", "the backup file to write (new)"},
                              {"json", CND_OPT_FLAG, &json, NULL, "print the result as JSON"},
                              {0}};
    const cnd_cli_t cli = {
        "condenser coordinator backup --out FILE [--dir DIR] [--json]",
        "Copies the coordinator's database (state, audit log, rollouts) into FILE while the "
        "coordinator and rollout server keep running (SQLite's online backup API), checks the "
        "copy's integrity and verifies its audit log against this coordinator's key. FILE "
        "appears only when all of that succeeded, and is never overwritten. The identity key is "
        "not included: back it up separately.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!out) return cnd_errf(CND_EINVAL, "--out FILE is required");
    double t0 = cnd_now();
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 1))) return rc;
    int pages = 0;
    uint64_t entries = 0;
    rc = cnd_db_backup(cnd_cstore_db(c.store), out, &pages);
    if (!rc && ((rc = s_verify_file(out, cnd_identity_pk(c.id), &entries, "the backup")) ||
                (rc = s_sign_backup(out, c.id))))
        unlink(out); /* a copy that does not verify is not a backup */
    if (!rc) rc = cnd_coord_admin_log(&c, "coordinator.backup", out, NULL, "ok");
    cnd_coord_close(&c);
    if (!rc) s_print(json, "backup", out, s_size(out), pages, entries, cnd_now() - t0, NULL);
    return rc;
}

/* Checks the backup `src` before it replaces anything: integrity, a coordinator database this
 * program can read, an audit log that verifies against pk. */
static int s_check_backup(const char *src, const uint8_t *pk, uint64_t *entries)
{
    int rc = s_check_signature(src, pk);
    if (rc) return rc;
    sqlite3 *db = NULL;
    if ((rc = cnd_db_open(&db, src, CND_DB_READONLY, "backup"))) return rc;
    int v = 0;
    if (!(rc = cnd_db_integrity(db, "the backup")) &&
        !(rc = cnd_db_version(db, "coordinator", &v))) {
        if (v == 0)
            rc = cnd_errf(CND_EFORMAT, "%s: not a coordinator database", src);
        else if (v > cnd_cstore_schema_version())
            rc =
                cnd_errf(CND_EFORMAT, "%s: coordinator schema %d is newer than this program's (%d)",
                         src, v, cnd_cstore_schema_version());
    }
    cnd_db_close(&db);
    if (!rc) rc = s_verify_file(src, pk, entries, "the backup");
    return rc;
}

/* The live database: saved aside (*saved), then given src's content. */
static int s_replace(const char *live, const char *src, char *saved, size_t cap)
{
    int exists = cnd_file_exists(live);
    sqlite3 *dst = NULL, *from = NULL;
    int rc = cnd_db_open(&dst, live, CND_DB_CREATE, "coordinator database");
    if (rc) return rc;
    if (exists) {
        snprintf(saved, cap, "%s.pre-restore-%lld", live, (long long)cnd_unix_time());
        rc = cnd_db_backup(dst, saved, NULL);
        if (rc)
            rc = cnd_err_wrap(rc,
                              "cannot save the current database before replacing it (if it is "
                              "damaged, move %s and its -wal and -shm files aside and restore "
                              "again)",
                              live);
    }
    if (!rc) rc = cnd_db_open(&from, src, CND_DB_READONLY, "backup");
    if (!rc) rc = cnd_db_restore(dst, from);
    cnd_db_close(&from);
    cnd_db_close(&dst);
    return rc;
}

int cnd_coord_cmd_restore(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir(), *from = NULL;
    int json = 0;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
                              {"from", CND_OPT_STR, &from, "FILE", "the backup to restore"},
                              {"json", CND_OPT_FLAG, &json, NULL, "print the result as JSON"},
                              {0}};
    const cnd_cli_t cli = {
        "condenser coordinator restore --from FILE [--dir DIR] [--json]",
        "Replaces the coordinator's database with a backup made by `coordinator backup`. "
        "Refused while the coordinator or a rollout server runs on DIR, and for a backup that "
        "is damaged, not a coordinator database, or whose audit log does not verify against "
        "this coordinator's key. The database it replaces is kept beside it "
        "(coordinator.db.pre-restore-TIME). Sites refuse to serve again rounds they already "
        "served: jobs that ran on after the backup cannot continue from it.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!from) return cnd_errf(CND_EINVAL, "--from FILE is required");
    double t0 = cnd_now();
    char lock[600], key[600], live[600], saved[700] = "";
    snprintf(lock, sizeof lock, "%s/%s", dir, CND_DB_DAEMON_LOCK);
    snprintf(key, sizeof key, "%s/%s", dir, CND_IDENTITY_KEY_FILE);
    snprintf(live, sizeof live, "%s/%s", dir, CND_COORD_DB_FILE);
    int lfd = -1;
    if ((rc = cnd_file_lock(lock, 1, &lfd)))
        return rc == CND_ESTATE ? cnd_errf(CND_ESTATE,
                                           "%s: a coordinator or rollout server is running on "
                                           "this directory: stop it before restoring",
                                           dir)
                                : rc;
    cnd_identity_t *id = NULL;
    uint64_t entries = 0;
    if (!(rc = cnd_identity_load(&id, key)) &&
        !(rc = s_check_backup(from, cnd_identity_pk(id), &entries)))
        rc = s_replace(live, from, saved, sizeof saved);
    cnd_identity_destroy(&id);
    cnd_coord_t c;
    if (!rc && !(rc = cnd_coord_open(&c, dir, 1))) {
        rc = s_verify_file(live, cnd_identity_pk(c.id), &entries, "the restored database");
        if (!rc) rc = cnd_coord_admin_log(&c, "coordinator.restore", from, NULL, "ok");
        cnd_coord_close(&c);
    }
    cnd_file_unlock(&lfd);
    if (!rc)
        s_print(json, "restored", from, s_size(live), 0, entries, cnd_now() - t0,
                saved[0] ? saved : NULL);
    return rc;
}
