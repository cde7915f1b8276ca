/*
 * replay.c: runs one fuzz target's LLVMFuzzerTestOneInput over files, with whatever compiler
 * builds the project, so ordinary test runs (scripts/test: gcc with ASan and UBSan) replay the
 * committed seed corpus and every input that once crashed (tests/fuzz.cmake, docs/fuzzing.md).
 *
 *   fuzz_replay_<target> PATH...     each PATH a file or a directory (its files, sorted by name,
 *                                    dot files skipped; no recursion)
 *
 * Each input's name is printed before it runs, so a crash names its input. Exit status 0 when
 * every input ran; 1 when a path cannot be read or no input was found at all (a replay of
 * nothing proves nothing). Crashes and sanitizer reports end the process as they would under
 * libFuzzer.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static int s_run_file(const char *path, double *slowest, char *slowest_name, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap_b = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap_b);
    for (;;) {
        if (!buf) break;
        if (n == cap_b) {
            uint8_t *nb = realloc(buf, cap_b * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap_b *= 2;
        }
        size_t got = fread(buf + n, 1, cap_b - n, f);
        if (got == 0) break;
        n += got;
    }
    int bad = ferror(f) || !buf;
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        return -1;
    }
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    /* an exact-size copy, so ASan sees a read one past the input as an overflow */
    uint8_t *in = malloc(n ? n : 1);
    if (!in) {
        free(buf);
        return -1;
    }
    memcpy(in, buf, n);
    free(buf);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    (void)LLVMFuzzerTestOneInput(in, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    free(in);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (s > *slowest) {
        *slowest = s;
        snprintf(slowest_name, cap, "%s", path);
    }
    return 0;
}

static int s_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of dir in name order. Returns the count or -1. */
static long s_run_dir(const char *dir, double *slowest, char *slowest_name, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: cannot open directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap_n = 0;
    struct dirent *e;
    long rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap_n) {
            cap_n = cap_n ? cap_n * 2 : 64;
            char **nn = realloc(names, cap_n * sizeof *names);
            if (!nn) {
                rc = -1;
                break;
            }
            names = nn;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len))) {
            rc = -1;
            break;
        }
        snprintf(names[n], len, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    if (rc == 0 && n) qsort(names, n, sizeof *names, s_cmp);
    long ran = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (s_run_file(names[i], slowest, slowest_name, cap) != 0)
                rc = -1;
            else
                ran++;
        }
        free(names[i]);
    }
    free(names);
    return rc ? rc : ran;
}

int main(int argc, char **argv)
{
    long total = 0;
    double slowest = 0;
    char slowest_name[4096] = "";
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        long n = S_ISDIR(st.st_mode)
                     ? s_run_dir(argv[i], &slowest, slowest_name, sizeof slowest_name)
                     : (s_run_file(argv[i], &slowest, slowest_name, sizeof slowest_name) ? -1 : 1);
        if (n < 0) return 1;
        total += n;
    }
    if (total == 0) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    fprintf(stderr, "replay: %ld inputs ran; slowest %.3f s (%s)\n", total, slowest, slowest_name);
    return 0;
}
