/*
 * fuzz.h: what the fuzz targets in tests/fuzz/ share (docs/fuzzing.md).
 *
 * Each fuzz_<target>.c defines LLVMFuzzerTestOneInput and nothing else that a driver needs, so
 * the same file links into two programs: the libFuzzer binary (clang, -DCND_FUZZ=ON) and the
 * replay program (replay.c, any compiler), which ctest runs over the committed corpus and every
 * input that ever crashed (tests/fuzz.cmake).
 *
 * A target must never abort on bad input: bad input is the point. It aborts only when a
 * property the product promises is broken (a parser accepts, then its own output is refused),
 * so the fuzzer reports it like a crash.
 *
 * Parsers that take a path read the input through fuzz_file(): an anonymous memory file
 * (memfd) rewritten on each call and named /proc/self/fd/N, so no disk is touched and the
 * product's own open/read/gzread code runs unchanged.
 */
#ifndef CND_FUZZ_H
#define CND_FUZZ_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_FILES 4

/* Results computed only to run the code behind them land here (gcc does not let (void) silence
 * warn_unused_result). */
static volatile long fuzz_sink;

/* A path whose contents are data[0..size), valid until the next call with the same slot
 * (0..FUZZ_FILES-1). A failing memfd is the machine's fault, not the input's: abort. */
static inline const char *fuzz_file(int slot, const void *data, size_t size)
{
    static int fds[FUZZ_FILES] = {-1, -1, -1, -1};
    static char paths[FUZZ_FILES][40];
    if (fds[slot] < 0) {
        fds[slot] = memfd_create("cnd-fuzz", MFD_CLOEXEC);
        if (fds[slot] < 0) abort();
        snprintf(paths[slot], sizeof paths[slot], "/proc/self/fd/%d", fds[slot]);
    }
    if (ftruncate(fds[slot], 0) != 0) abort();
    const uint8_t *p = data;
    for (size_t off = 0; off < size;) {
        ssize_t w = pwrite(fds[slot], p + off, size - off, (off_t)off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    return paths[slot];
}

/* Says, when CND_FUZZ_VERBOSE is set, that an input got as far as `what` (for checking that
 * the seeds reach the code behind the parsers: CND_FUZZ_VERBOSE=1 fuzz_replay_X corpus/X). */
static inline void fuzz_note(const char *what)
{
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("CND_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "  reached: %s\n", what);
}

/* Reads the error detail the product recorded, so a message built from freed or uninitialised
 * memory is touched (and reported by ASan) here; then clears it. */
static inline void fuzz_touch_error(void)
{
    const char *d = cnd_err_detail();
    if (d) fuzz_sink += (long)strlen(d);
    cnd_err_clear();
}

#endif
