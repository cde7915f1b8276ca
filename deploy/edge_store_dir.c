/*
 * edge_store_dir.c: the edge store on a real device, files in one directory (edge_store.h).
 *
 * Atomic writes are done here step by step rather than with cnd_file_write_atomic() so that
 * every durable step can be numbered and a test can end the process exactly between two of them
 * (CND_EDGE_CRASH_AT, read only in builds with CND_TEST_HOOKS). The steps of one atomic write:
 * write DIR/.NAME.tmp, fsync it, rename it over DIR/NAME, fsync DIR. The partial download is
 * DIR/download.part, created with exactly the signed size (ftruncate) and written chunk by chunk
 * with pwrite + fsync.
 */
#include "edge_store.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char dir[512];
    long crash_at; /* 0 = never */
    long step;
    int trace;
} s_dir_t;

static void s_step(s_dir_t *d, const char *what)
{
    d->step++;
    if (d->trace) fprintf(stderr, "edge-store step %ld: %s\n", d->step, what);
    if (d->crash_at && d->step == d->crash_at) _exit(86);
}

static void s_path(char *out, size_t cap, const s_dir_t *d, const char *name)
{
    snprintf(out, cap, "%s/%s", d->dir, name);
}

static int s_fsync_dir(s_dir_t *d)
{
    int fd = open(d->dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return cnd_errf(CND_EIO, "%s: cannot open the directory: %s", d->dir, strerror(errno));
    int r = fsync(fd);
    close(fd);
    if (r) return cnd_errf(CND_EIO, "%s: fsync: %s", d->dir, strerror(errno));
    return 0;
}

static int s_write_all(int fd, const uint8_t *p, size_t n, off_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

static int s_atomic(s_dir_t *d, const char *name, const uint8_t *data, size_t len)
{
    char tmp[600], dst[600], what[80];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", d->dir, name);
    s_path(dst, sizeof dst, d, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return cnd_errf(CND_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    if (s_write_all(fd, data, len, 0)) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return cnd_errf(CND_EIO, "%s: write: %s", tmp, strerror(e));
    }
    snprintf(what, sizeof what, "%s written to a temporary file", name);
    s_step(d, what);
    if (fsync(fd)) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return cnd_errf(CND_EIO, "%s: fsync: %s", tmp, strerror(e));
    }
    close(fd);
    snprintf(what, sizeof what, "%s temporary file fsync'd", name);
    s_step(d, what);
    if (rename(tmp, dst)) {
        int e = errno;
        unlink(tmp);
        return cnd_errf(CND_EIO, "%s: rename to %s: %s", tmp, dst, strerror(e));
    }
    snprintf(what, sizeof what, "%s renamed into place", name);
    s_step(d, what);
    int rc = s_fsync_dir(d);
    snprintf(what, sizeof what, "%s directory fsync'd", name);
    s_step(d, what);
    return rc;
}

static int s_read(s_dir_t *d, const char *name, uint8_t **data, size_t *len)
{
    char p[600];
    s_path(p, sizeof p, d, name);
    if (!cnd_file_exists(p)) return CND_ENOTFOUND;
    return cnd_file_read(p, (size_t)1 << 31, data, len);
}

static int s_state_load(void *ctx, uint8_t **data, size_t *len)
{
    return s_read(ctx, "state", data, len);
}

static int s_state_save(void *ctx, const uint8_t *data, size_t len)
{
    return s_atomic(ctx, "state", data, len);
}

static const char *s_slot_name(int slot)
{
    return slot ? "slot-b.cndq" : "slot-a.cndq";
}

static int s_slot_write(void *ctx, int slot, const uint8_t *data, size_t len,
                        const uint8_t digest[32])
{
    (void)digest;
    return s_atomic(ctx, s_slot_name(slot), data, len);
}

static int s_slot_read(void *ctx, int slot, uint8_t **data, size_t *len)
{
    return s_read(ctx, s_slot_name(slot), data, len);
}

static int s_part_begin(void *ctx, uint64_t size)
{
    s_dir_t *d = ctx;
    char p[600];
    s_path(p, sizeof p, d, "download.part");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return cnd_errf(CND_EIO, "%s: cannot create: %s", p, strerror(errno));
    if (ftruncate(fd, (off_t)size) || fsync(fd)) {
        int e = errno;
        close(fd);
        return cnd_errf(CND_EIO, "%s: reserving %llu bytes: %s", p, (unsigned long long)size,
                        strerror(e));
    }
    close(fd);
    s_step(d, "download.part reserved at the signed size");
    return s_fsync_dir(d);
}

static int s_part_write(void *ctx, uint64_t off, const uint8_t *data, size_t len,
                        const uint8_t sha[32])
{
    (void)sha;
    s_dir_t *d = ctx;
    char p[600];
    s_path(p, sizeof p, d, "download.part");
    int fd = open(p, O_WRONLY);
    if (fd < 0) return cnd_errf(CND_EIO, "%s: cannot open: %s", p, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || off > (uint64_t)st.st_size || len > (uint64_t)st.st_size - off) {
        close(fd);
        return cnd_errf(CND_ERANGE, "%s: chunk at %llu (+%zu) is outside the reserved size", p,
                        (unsigned long long)off, len);
    }
    if (s_write_all(fd, data, len, (off_t)off)) {
        int e = errno;
        close(fd);
        return cnd_errf(CND_EIO, "%s: write: %s", p, strerror(e));
    }
    s_step(d, "chunk written to download.part");
    int r = fsync(fd);
    close(fd);
    if (r) return cnd_errf(CND_EIO, "%s: fsync: %s", p, strerror(errno));
    s_step(d, "download.part fsync'd");
    return 0;
}

static int s_part_read(void *ctx, uint8_t **data, size_t *len)
{
    return s_read(ctx, "download.part", data, len);
}

static void s_part_discard(void *ctx)
{
    s_dir_t *d = ctx;
    char p[600];
    s_path(p, sizeof p, d, "download.part");
    unlink(p);
}

static const cnd_edge_store_ops_t s_ops = {s_state_load, s_state_save,  s_slot_write,
                                           s_slot_read,  s_part_begin,  s_part_write,
                                           s_part_read,  s_part_discard};

int cnd_edge_store_dir(cnd_edge_store_t *out, const char *dir)
{
    memset(out, 0, sizeof *out);
    int rc = cnd_mkdir_p(dir, 0700);
    if (rc) return rc;
    s_dir_t *d = calloc(1, sizeof *d);
    if (!d) return cnd_errf(CND_ENOMEM, "edge store: out of memory");
    if (strlen(dir) >= sizeof d->dir) {
        free(d);
        return cnd_errf(CND_EINVAL, "%s: directory name too long", dir);
    }
    snprintf(d->dir, sizeof d->dir, "%s", dir);
#ifdef CND_TEST_HOOKS
    const char *c = getenv("CND_EDGE_CRASH_AT");
    d->crash_at = c ? strtol(c, NULL, 10) : 0;
    const char *t = getenv("CND_EDGE_CRASH_TRACE");
    d->trace = t && *t == '1';
#endif
    out->ops = &s_ops;
    out->ctx = d;
    return 0;
}

void cnd_edge_store_dir_free(cnd_edge_store_t *s)
{
    if (!s) return;
    free(s->ctx);
    s->ctx = NULL;
    s->ops = NULL;
}
