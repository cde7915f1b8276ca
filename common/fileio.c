/*
 * fileio.c: see fileio.h. The atomic write follows the classic recipe
 * (write temp, fsync temp, rename, fsync directory); the temporary name carries the pid so two
 * writers of the same path never share a temp file.
 */
#include "fileio.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

int cnd_file_read(const char *path, size_t max_bytes, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cnd_errf(CND_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cnd_errf(CND_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return cnd_errf(CND_ERANGE, "%s: %lld bytes exceeds the limit of %zu", path,
                        (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return cnd_errf(CND_ENOMEM, "%s: cannot allocate %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            free(buf);
            close(fd);
            return cnd_errf(CND_EIO, "%s: read failed at byte %zu: %s", path, got,
                            r == 0 ? "unexpected end of file" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

int cnd_file_read_gz(const char *path, size_t max_bytes, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cnd_errf(CND_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cnd_errf(CND_EIO, "%s: not a regular file", path);
    }
    gzFile gz = gzdopen(fd, "rb"); /* owns fd from here */
    if (!gz) {
        close(fd);
        return cnd_errf(CND_ENOMEM, "%s: out of memory", path);
    }
    /* starts small and doubles: most reads are a few KiB (labels), and a 1 MiB first buffer
     * made each of them map and unmap a fresh MiB */
    size_t cap = max_bytes < ((size_t)1 << 16) ? max_bytes : ((size_t)1 << 16), n = 0;
    uint8_t *buf = malloc(cap + 1);
    if (!buf) {
        gzclose(gz);
        return cnd_errf(CND_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            uint8_t probe;
            if (cap >= max_bytes && gzread(gz, &probe, 1) == 0) break;
            if (cap >= max_bytes) {
                free(buf);
                gzclose(gz);
                return cnd_errf(CND_ERANGE, "%s: uncompressed size exceeds the limit of %zu", path,
                                max_bytes);
            }
            size_t ncap = cap * 2 > max_bytes ? max_bytes : cap * 2;
            uint8_t *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                gzclose(gz);
                return cnd_errf(CND_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap = ncap;
        }
        size_t want = cap - n;
        if (want > INT_MAX / 2) want = INT_MAX / 2;
        int r = gzread(gz, buf + n, (unsigned)want);
        if (r < 0) {
            /* zlib's message lives in gz: format it before gzclose frees it */
            int zerr;
            int rc = cnd_errf(CND_EFORMAT, "%s: corrupt gzip stream after %zu bytes: %s", path, n,
                              gzerror(gz, &zerr));
            free(buf);
            gzclose(gz);
            return rc;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    /* gzread returns 0 at a truncated gzip member without an error; gzclose reports it. */
    int zerr = gzclose(gz);
    if (zerr != Z_OK) {
        free(buf);
        return cnd_errf(CND_EFORMAT, "%s: truncated or corrupt gzip data (zlib error %d)", path,
                        zerr);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

int cnd_file_fsync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return cnd_errf(CND_EINVAL, "%s: path too long", path);
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return cnd_errf(CND_EIO, "%s: cannot open directory: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return cnd_errf(CND_EIO, "%s: fsync of directory failed", dir);
    return 0;
}

int cnd_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return cnd_errf(CND_EINVAL, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return cnd_errf(CND_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    if (fchmod(fd, mode) != 0) goto fail;
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) goto fail;
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) goto fail;
    return cnd_file_fsync_dir(path);
fail:;
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    return cnd_errf(CND_EIO, "%s: write failed: %s", path, strerror(e));
}

int cnd_file_lock(const char *path, int exclusive, int *fd)
{
    *fd = -1;
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f < 0) return cnd_errf(CND_EIO, "%s: cannot open lock file: %s", path, strerror(errno));
    if (flock(f, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
        int e = errno;
        close(f);
        if (e == EWOULDBLOCK) return cnd_errf(CND_ESTATE, "%s: locked by another process", path);
        return cnd_errf(CND_EIO, "%s: cannot lock: %s", path, strerror(e));
    }
    *fd = f;
    return 0;
}

void cnd_file_unlock(int *fd)
{
    if (!fd || *fd < 0) return;
    close(*fd); /* drops the flock */
    *fd = -1;
}

int cnd_mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return cnd_errf(CND_EINVAL, "bad directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, mode) != 0 && errno != EEXIST)
                return cnd_errf(CND_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    return 0;
}

int cnd_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* --- staged directories ----------------------------------------------------------------------- */

static int s_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

void cnd_dir_remove(const char *path)
{
    if (!path || !*path) return;
    nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Removes "<dir>.init-<pid>-XXXXXX" siblings whose process no longer runs. */
static void s_remove_stale_stages(const char *dir)
{
    char parent[PATH_MAX], base[PATH_MAX];
    const char *slash = strrchr(dir, '/');
    if (slash) {
        size_t n = (size_t)(slash - dir);
        if (n >= sizeof parent) return;
        memcpy(parent, dir, n);
        parent[n] = 0;
        if (n == 0) strcpy(parent, "/");
        snprintf(base, sizeof base, "%s", slash + 1);
    } else {
        strcpy(parent, ".");
        snprintf(base, sizeof base, "%s", dir);
    }
    size_t bl = strlen(base);
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = 0;
        if (strncmp(e->d_name, base, bl) != 0 || strncmp(e->d_name + bl, ".init-", 6) != 0)
            continue;
        if (sscanf(e->d_name + bl + 6, "%ld-", &pid) != 1 || pid <= 0) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* still running */
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", parent, e->d_name) < (int)sizeof p) cnd_dir_remove(p);
    }
    closedir(d);
}

int cnd_dir_stage(char *tmp, size_t cap, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    char d[PATH_MAX];
    if (n == 0 || n >= sizeof d) return cnd_errf(CND_EINVAL, "bad directory path '%s'", dir);
    memcpy(d, dir, n);
    d[n] = 0;
    const char *slash = strrchr(d, '/');
    if (slash && slash != d) {
        char parent[PATH_MAX];
        memcpy(parent, d, (size_t)(slash - d));
        parent[slash - d] = 0;
        int rc = cnd_mkdir_p(parent, 0755);
        if (rc) return rc;
    }
    s_remove_stale_stages(d);
    if (snprintf(tmp, cap, "%s.init-%ld-XXXXXX", d, (long)getpid()) >= (int)cap)
        return cnd_errf(CND_EINVAL, "%s: path too long", dir);
    if (!mkdtemp(tmp))
        return cnd_errf(CND_EIO, "%s: cannot create a staging directory: %s", tmp, strerror(errno));
    return 0;
}

/* 1 when the files at a and b hold the same bytes. */
static int s_same_file(const char *a, const char *b)
{
    uint8_t *x = NULL, *y = NULL;
    size_t lx = 0, ly = 0;
    int same = cnd_file_read(a, (size_t)1 << 30, &x, &lx) == 0 &&
               cnd_file_read(b, (size_t)1 << 30, &y, &ly) == 0 && lx == ly && memcmp(x, y, lx) == 0;
    free(x);
    free(y);
    cnd_err_clear();
    return same;
}

/* 1 when dir has no entry but . and .. (0 also when it cannot be read). */
static int s_dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
    closedir(d);
    return empty;
}

int cnd_dir_publish(const char *tmp, const char *dir, const char *last)
{
    struct stat sb;
    if (stat(dir, &sb) != 0 || (S_ISDIR(sb.st_mode) && s_dir_empty(dir))) {
        if (rename(tmp, dir) != 0)
            return cnd_errf(CND_EIO, "%s: cannot move %s into place: %s", dir, tmp,
                            strerror(errno));
        return cnd_file_fsync_dir(dir); /* the parent, which holds the new entry */
    }
    if (!S_ISDIR(sb.st_mode)) return cnd_errf(CND_EEXIST, "%s exists and is not a directory", dir);
    /* dir holds files already (e.g. the identity from `keygen --out DIR`): first check every
     * entry, then move them, `last` at the end. */
    DIR *d = opendir(tmp);
    if (!d) return cnd_errf(CND_EIO, "%s: %s", tmp, strerror(errno));
    struct dirent *e;
    int rc = 0;
    for (int pass = 0; pass < 3 && !rc; pass++) {
        rewinddir(d);
        while (!rc && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            int is_last = last && strcmp(e->d_name, last) == 0;
            if ((pass == 1 && is_last) || (pass == 2 && !is_last)) continue;
            char from[PATH_MAX], to[PATH_MAX];
            if (snprintf(from, sizeof from, "%s/%s", tmp, e->d_name) >= (int)sizeof from ||
                snprintf(to, sizeof to, "%s/%s", dir, e->d_name) >= (int)sizeof to) {
                rc = cnd_errf(CND_EINVAL, "%s: path too long", dir);
                break;
            }
            int exists = stat(to, &sb) == 0;
            if (pass == 0) {
                if (exists && !s_same_file(from, to))
                    rc = cnd_errf(CND_EEXIST, "%s exists already (and differs): not overwritten",
                                  to);
            } else if (!exists && rename(from, to) != 0) {
                rc = cnd_errf(CND_EIO, "%s: cannot move into place: %s", to, strerror(errno));
            }
        }
    }
    closedir(d);
    if (!rc) {
        char probe[PATH_MAX];
        snprintf(probe, sizeof probe, "%s/.", dir);
        rc = cnd_file_fsync_dir(probe);
    }
    if (!rc) cnd_dir_remove(tmp);
    return rc;
}
