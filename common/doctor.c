/* doctor.c: see doctor.h. */
#include "doctor.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static const char *const s_status_name[3] = {"OK", "WARN", "FAIL"};

void cnd_doctor_add(cnd_doctor_t *r, cnd_doctor_status_t st, const char *name, const char *fix,
                    const char *fmt, ...)
{
    r->counts[st]++;
    if (r->n >= CND_DOCTOR_MAX) return;
    cnd_doctor_check_t *c = &r->checks[r->n++];
    c->status = st;
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->fix, sizeof c->fix, "%s", fix ? fix : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->what, sizeof c->what, fmt, ap);
    va_end(ap);
}

void cnd_doctor_secret(cnd_doctor_t *r, const char *name, const char *path)
{
    char fix[600];
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(fix, sizeof fix, "create it (condenser keygen) or correct the path");
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, fix, "%s: %s", path, strerror(errno));
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, "point the configuration at the key file",
                       "%s: not a regular file", path);
        return;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(fix, sizeof fix, "chmod 600 %s (and make the daemon's user its owner)", path);
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, fix,
                       "%s: mode %04o: group or others can access a private key", path,
                       (unsigned)(st.st_mode & 07777));
        return;
    }
    if (access(path, R_OK) != 0) {
        snprintf(fix, sizeof fix, "chown the key to the user the daemon runs as (uid %u)",
                 (unsigned)geteuid());
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, fix, "%s: mode %04o, owner uid %u: %s", path,
                       (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, strerror(errno));
        return;
    }
    cnd_doctor_add(r, CND_DOCTOR_OK, name, NULL, "%s: mode %04o, owner uid %u", path,
                   (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
}

void cnd_doctor_secret_dir(cnd_doctor_t *r, const char *name, const char *dir)
{
    char fix[600];
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, "create it or correct the path",
                       "%s: not a directory", dir);
        return;
    }
    if (st.st_mode & S_IRWXO) {
        snprintf(fix, sizeof fix, "chmod o-rwx %s", dir);
        cnd_doctor_add(r, CND_DOCTOR_WARN, name, fix, "%s: mode %04o: others can enter it", dir,
                       (unsigned)(st.st_mode & 07777));
        return;
    }
    cnd_doctor_add(r, CND_DOCTOR_OK, name, NULL, "%s: mode %04o", dir,
                   (unsigned)(st.st_mode & 07777));
}

void cnd_doctor_readable(cnd_doctor_t *r, const char *name, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        char fix[600];
        snprintf(fix, sizeof fix,
                 errno == EACCES ? "let the daemon's user read it (chgrp condenser and chmod g+r)"
                                 : "correct the path in the configuration");
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, fix, "%s: %s", path, strerror(errno));
        return;
    }
    close(fd);
    cnd_doctor_add(r, CND_DOCTOR_OK, name, NULL, "%s: readable", path);
}

void cnd_doctor_writable(cnd_doctor_t *r, const char *name, const char *dir)
{
    char probe[4200], fix[600];
    snprintf(fix, sizeof fix, "create %s, owned by the daemon's user (uid %u)", dir,
             (unsigned)geteuid());
    snprintf(probe, sizeof probe, "%s/.condenser-doctor.%ld", dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, fix, "%s: cannot create a file: %s", dir,
                       strerror(errno));
        return;
    }
    int ok = write(fd, "x", 1) == 1 && fsync(fd) == 0;
    int e = errno;
    close(fd);
    unlink(probe);
    if (!ok) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, "free space or fix the file system",
                       "%s: cannot write and sync a file: %s", dir, strerror(e));
        return;
    }
    cnd_doctor_add(r, CND_DOCTOR_OK, name, NULL, "%s: writable", dir);
}

void cnd_doctor_disk(cnd_doctor_t *r, const char *name, const char *dir)
{
    struct statvfs v;
    if (statvfs(dir, &v) != 0) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, "create the directory", "%s: %s", dir,
                       strerror(errno));
        return;
    }
    unsigned long long avail = (unsigned long long)v.f_bavail * v.f_frsize;
    double mib = (double)avail / (1 << 20);
    if (avail < CND_DOCTOR_DISK_FAIL)
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name,
                       "free space there: databases, audit logs and models grow with every job",
                       "%s: %.0f MiB free (under %llu MiB)", dir, mib, CND_DOCTOR_DISK_FAIL >> 20);
    else if (avail < CND_DOCTOR_DISK_WARN)
        cnd_doctor_add(r, CND_DOCTOR_WARN, name, "free space there before long jobs",
                       "%s: %.0f MiB free (under %llu MiB)", dir, mib, CND_DOCTOR_DISK_WARN >> 20);
    else
        cnd_doctor_add(r, CND_DOCTOR_OK, name, NULL, "%s: %.1f GiB free", dir, mib / 1024);
}

void cnd_doctor_port(cnd_doctor_t *r, const char *name, const char *addr)
{
    const char *a = strncmp(addr, "tcp://", 6) == 0 ? addr + 6 : addr;
    const char *colon = strrchr(a, ':');
    char host[256], port[16];
    if (strncmp(addr, "ipc://", 6) == 0 || strncmp(addr, "inproc://", 9) == 0) {
        cnd_doctor_add(r, CND_DOCTOR_OK, name, NULL, "%s: not a TCP port", addr);
        return;
    }
    if (!colon || colon == a || (size_t)(colon - a) >= sizeof host ||
        strlen(colon + 1) >= sizeof port || !colon[1]) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, "write it as tcp://HOST:PORT or HOST:PORT",
                       "'%s': not HOST:PORT", addr);
        return;
    }
    memcpy(host, a, (size_t)(colon - a));
    host[colon - a] = 0;
    snprintf(port, sizeof port, "%s", colon + 1);
    if (strcmp(port, "*") == 0 || strcmp(port, "0") == 0) {
        cnd_doctor_add(r, CND_DOCTOR_OK, name, NULL, "%s: any free port", addr);
        return;
    }
    if (host[0] == '[') { /* [::1] */
        size_t l = strlen(host);
        if (l >= 2 && host[l - 1] == ']') {
            memmove(host, host + 1, l - 2);
            host[l - 2] = 0;
        }
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int bad_host = strcmp(host, "*") == 0 ? getaddrinfo(NULL, port, &hints, &ai)
                                          : getaddrinfo(host, port, &hints, &ai);
    if (bad_host || !ai) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, "use an address of this machine",
                       "%s: cannot resolve '%s': %s", addr, host, gai_strerror(bad_host));
        return;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, e = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
        e = errno;
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    if (e == EADDRINUSE)
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name,
                       "stop what holds it (ss -ltnp shows it) or choose another port",
                       "%s: port %s is in use", addr, port);
    else if (e == EACCES)
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, "use a port above 1023",
                       "%s: binding port %s is not permitted", addr, port);
    else if (e)
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, "use an address of this machine",
                       "%s: cannot bind: %s", addr, strerror(e));
    else
        cnd_doctor_add(r, CND_DOCTOR_OK, name, NULL, "%s: port %s is free", addr, port);
}

void cnd_doctor_days(cnd_doctor_t *r, const char *name, const char *path, long long not_after,
                     long long now, int warn_days, const char *fix)
{
    long long d = not_after - now;
    long long days = d >= 0 ? d / 86400 : -((-d + 86399) / 86400);
    if (d < 0)
        cnd_doctor_add(r, CND_DOCTOR_FAIL, name, fix, "%s: expired %lld day%s ago", path, -days,
                       -days == 1 ? "" : "s");
    else if (days < warn_days)
        cnd_doctor_add(r, CND_DOCTOR_WARN, name, fix, "%s: %lld day%s left", path, days,
                       days == 1 ? "" : "s");
    else
        cnd_doctor_add(r, CND_DOCTOR_OK, name, NULL, "%s: %lld days left", path, days);
}

void cnd_doctor_print(const cnd_doctor_t *r, int json)
{
    if (json) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "ok");
        cnd_jw_bool(&w, r->counts[CND_DOCTOR_FAIL] == 0);
        cnd_jw_key(&w, "counts");
        cnd_jw_obj(&w);
        for (int s = 0; s < 3; s++) {
            char k[8];
            snprintf(k, sizeof k, "%s", s == 0 ? "ok" : s == 1 ? "warn" : "fail");
            cnd_jw_key(&w, k);
            cnd_jw_int(&w, (int64_t)r->counts[s]);
        }
        cnd_jw_obj_end(&w);
        cnd_jw_key(&w, "checks");
        cnd_jw_arr(&w);
        for (size_t i = 0; i < r->n; i++) {
            const cnd_doctor_check_t *c = &r->checks[i];
            cnd_jw_obj(&w);
            cnd_jw_key(&w, "name");
            cnd_jw_str(&w, c->name);
            cnd_jw_key(&w, "status");
            cnd_jw_str(&w, s_status_name[c->status]);
            cnd_jw_key(&w, "what");
            cnd_jw_str(&w, c->what);
            cnd_jw_key(&w, "fix");
            if (c->fix[0])
                cnd_jw_str(&w, c->fix);
            else
                cnd_jw_null(&w);
            cnd_jw_obj_end(&w);
        }
        cnd_jw_arr_end(&w);
        cnd_jw_obj_end(&w);
        printf("%s\n", cnd_jw_text(&w));
        cnd_jw_free(&w);
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        const cnd_doctor_check_t *c = &r->checks[i];
        printf("%-5s %s: %s\n", s_status_name[c->status], c->name, c->what);
        if (c->fix[0]) printf("      fix: %s\n", c->fix);
    }
    printf("%zu ok, %zu warning%s, %zu failure%s\n", r->counts[0], r->counts[1],
           r->counts[1] == 1 ? "" : "s", r->counts[2], r->counts[2] == 1 ? "" : "s");
}
