/*
 * fleet_mkart.c: writes test artifacts for the fleet shell tests and benchmarks:
 * fleet_mkart OUT.cndq big(0|1) wbits(8|4) seed. Not a test by itself.
 */
#include "fleet_testutil.h"

#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s OUT.cndq BIG WBITS SEED\n", argv[0]);
        return 2;
    }
    uint8_t *a = NULL;
    size_t n = 0;
    int rc = fleet_mkart(&a, &n, atoi(argv[2]), atoi(argv[3]), strtoull(argv[4], NULL, 10));
    if (!rc) rc = cnd_file_write_atomic(argv[1], a, n, 0644);
    free(a);
    if (rc) {
        fprintf(stderr, "fleet_mkart: %s\n", cnd_err_detail());
        return 1;
    }
    return 0;
}
