/*
 * check.h: the few macros our tests use. A failed CHECK prints file:line and the expression,
 * counts the failure and carries on, so one run shows every broken property; main() returns
 * check_result() which is non-zero when anything failed.
 */
#ifndef CND_CHECK_H
#define CND_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        check_count++;                                                                             \
        if (!(cond)) {                                                                             \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        check_count++;                                                                             \
        if (_a != _b) {                                                                            \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__,  \
                    #a, #b, _a, _b);                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double _a = (double)(a), _b = (double)(b);                                                 \
        check_count++;                                                                             \
        if (!(fabs(_a - _b) <= (tol))) {                                                           \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s ~ %s (%.9g vs %.9g, tol %g)\n", __FILE__,     \
                    __LINE__, #a, #b, _a, _b, (double)(tol));                                      \
        }                                                                                          \
    } while (0)

static inline int check_result(const char *name)
{
    fprintf(stderr, "%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
