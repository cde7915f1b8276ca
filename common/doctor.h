/*
 * doctor.h: the checks `condenser doctor` runs on a node before it starts, and their report.
 *
 * A report is a list of checks, each OK, WARN or FAIL with what was found and, unless OK, what
 * to do about it. This file holds the report and the checks that need only the C library
 * (permissions, writable directories, free disk space, ports); the checks that read keys,
 * certificates, data or databases live with the parts that own those (coordinator/demo/
 * cmd_doctor.c calls them) and add their results with cnd_doctor_add(). Nothing here changes
 * anything on disk except a probe file created and removed in a directory tested for writing.
 */
#ifndef CND_DOCTOR_H
#define CND_DOCTOR_H

#include <stddef.h>

typedef enum { CND_DOCTOR_OK = 0, CND_DOCTOR_WARN = 1, CND_DOCTOR_FAIL = 2 } cnd_doctor_status_t;

#define CND_DOCTOR_MAX 64

typedef struct {
    char name[64];  /* what was checked: "identity key", "metrics port" */
    char what[512]; /* what was found: "/etc/condenser/keys/identity.key: mode 0600" */
    char fix[512];  /* what to do; "" when OK */
    cnd_doctor_status_t status;
} cnd_doctor_check_t;

typedef struct {
    cnd_doctor_check_t checks[CND_DOCTOR_MAX];
    size_t n;         /* checks recorded (later ones past CND_DOCTOR_MAX are dropped) */
    size_t counts[3]; /* by status */
} cnd_doctor_t;

/* Disk space thresholds for the state directory (bytes available to an unprivileged user). */
#define CND_DOCTOR_DISK_FAIL (100ull << 20) /* 100 MiB */
#define CND_DOCTOR_DISK_WARN (1ull << 30)   /* 1 GiB */

/* Records one check; `fix` may be NULL (for OK). */
void cnd_doctor_add(cnd_doctor_t *r, cnd_doctor_status_t st, const char *name, const char *fix,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* A secret (private key): exists, regular file, readable by us, not readable or writable by
 * group or others. FAIL otherwise, with the chmod to run. */
void cnd_doctor_secret(cnd_doctor_t *r, const char *name, const char *path);

/* A directory that holds secrets: not accessible by others (WARN when group or others can list
 * or enter it). */
void cnd_doctor_secret_dir(cnd_doctor_t *r, const char *name, const char *dir);

/* A file we only need to read. */
void cnd_doctor_readable(cnd_doctor_t *r, const char *name, const char *path);

/* A directory we write state into: exists and a file can be created, synced and removed. */
void cnd_doctor_writable(cnd_doctor_t *r, const char *name, const char *dir);

/* Free space where `dir` is: FAIL below CND_DOCTOR_DISK_FAIL, WARN below CND_DOCTOR_DISK_WARN. */
void cnd_doctor_disk(cnd_doctor_t *r, const char *name, const char *dir);

/* A TCP port a daemon will listen on: `addr` is tcp://HOST:PORT (CurveZMQ endpoints) or
 * HOST:PORT (--metrics); HOST "*" or "0.0.0.0" means every interface; port "*" or 0 any port
 * (always OK). FAIL when binding fails (in use, no such address, a privileged port). */
void cnd_doctor_port(cnd_doctor_t *r, const char *name, const char *addr);

/* Days left before a certificate-like date: FAIL when past, WARN below warn_days, else OK. */
void cnd_doctor_days(cnd_doctor_t *r, const char *name, const char *path, long long not_after,
                     long long now, int warn_days, const char *fix);

/* Prints the report: a line per check ("OK    name: what" and, unless OK, "      fix: ...")
 * and a summary, or with json one object {"ok":bool,"counts":{...},"checks":[{name,status,
 * what,fix}]}. */
void cnd_doctor_print(const cnd_doctor_t *r, int json);

#endif
