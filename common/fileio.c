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

static int s_fsync_dir(const char *path)
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
    return s_fsync_dir(path);
fail:;
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    return cnd_errf(CND_EIO, "%s: write failed: %s", path, strerror(e));
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
