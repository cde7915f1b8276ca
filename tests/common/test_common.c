/* test_common.c: common/ (errors, files, digests, RNG, byte reader, CLI). */
#include "bytes.h"
#include "check.h"
#include "clock.h"
#include "cli.h"
#include "digest.h"
#include "error.h"
#include "fileio.h"
#include "rng.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static void test_sha256_kat(void)
{
    /* FIPS 180-2 known answers. */
    uint8_t d[32];
    char hex[65];
    cnd_sha256(d, "abc", 3);
    CHECK(!strcmp(cnd_hex(hex, d, 32),
                  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    cnd_sha256(d, "", 0);
    CHECK(!strcmp(cnd_hex(hex, d, 32),
                  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    cnd_sha256_t *c = cnd_sha256_new();
    CHECK(c != NULL);
    cnd_sha256_update(c, "ab", 2);
    cnd_sha256_update(c, "c", 1);
    uint8_t d2[32];
    cnd_sha256_final(c, d2);
    cnd_sha256(d, "abc", 3);
    CHECK(!memcmp(d, d2, 32));
    cnd_sha256_destroy(&c);
    CHECK(c == NULL);
    cnd_sha256_destroy(&c);
    uint8_t back[32];
    CHECK(cnd_unhex(back, 32, hex) == 0 && !memcmp(back, d2, 32) == 0);
    CHECK(cnd_unhex(back, 2, "zz00") == CND_EINVAL);
    CHECK(cnd_unhex(back, 2, "abc") == CND_EINVAL);
}

static void test_rng(void)
{
    cnd_rng_t a, b;
    cnd_rng_seed(&a, 42);
    cnd_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) CHECK_EQ_INT(cnd_rng_u64(&a) == cnd_rng_u64(&b), 1);
    cnd_rng_seed(&b, 43);
    CHECK(cnd_rng_u64(&a) != cnd_rng_u64(&b));
    /* Moments of the normal and gamma samplers. */
    double s = 0, ss = 0, g = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double x = cnd_rng_normal(&a);
        s += x;
        ss += x * x;
        g += cnd_rng_gamma(&a, 0.5);
    }
    CHECK_NEAR(s / n, 0.0, 0.01);
    CHECK_NEAR(ss / n, 1.0, 0.02);
    CHECK_NEAR(g / n, 0.5, 0.01);
    for (int i = 0; i < 10000; i++) {
        float f = cnd_rng_float(&a);
        CHECK_EQ_INT(f >= 0.0f && f < 1.0f, 1);
        CHECK_EQ_INT(cnd_rng_below(&a, 7) < 7, 1);
    }
    uint32_t p[100];
    for (int i = 0; i < 100; i++) p[i] = (uint32_t)i;
    cnd_rng_shuffle_u32(&a, p, 100);
    int seen[100] = {0}, moved = 0;
    for (int i = 0; i < 100; i++) {
        seen[p[i]]++;
        moved += p[i] != (uint32_t)i;
    }
    for (int i = 0; i < 100; i++) CHECK_EQ_INT(seen[i], 1);
    CHECK(moved > 50);
}

static void test_bytes(void)
{
    cnd_buf_t b;
    cnd_buf_init(&b);
    cnd_buf_u32(&b, 0x01020304);
    cnd_buf_str(&b, "hello");
    cnd_buf_f32(&b, 1.5f);
    cnd_buf_u64(&b, 0x1122334455667788ULL);
    CHECK_EQ_INT(b.len, 4 + 4 + 5 + 4 + 8);
    CHECK_EQ_INT(b.data[0], 4);
    cnd_rd_t r;
    cnd_rd_init(&r, b.data, b.len);
    CHECK_EQ_INT(cnd_rd_u32(&r), 0x01020304);
    char *s = cnd_rd_str(&r, 100);
    CHECK(s && !strcmp(s, "hello"));
    free(s);
    CHECK(cnd_rd_f32(&r) == 1.5f);
    CHECK(cnd_rd_u64(&r) == 0x1122334455667788ULL);
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_INT(cnd_rd_u8(&r), 0); /* overrun */
    CHECK(r.err != 0);
    /* A string longer than allowed, or longer than the input, fails. */
    cnd_rd_init(&r, b.data + 4, b.len - 4);
    CHECK(cnd_rd_str(&r, 4) == NULL && r.err);
    uint8_t evil[8] = {0xff, 0xff, 0xff, 0xff, 'a', 'b', 'c', 'd'};
    cnd_rd_init(&r, evil, sizeof evil);
    CHECK(cnd_rd_str(&r, UINT32_MAX) == NULL && r.err);
    cnd_buf_free(&b);
}

static void test_files(void)
{
    char dir[] = "/tmp/cnd_test_common_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], gz[256];
    snprintf(path, sizeof path, "%s/a/b/file.bin", dir);
    char sub[256];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    CHECK(cnd_mkdir_p(sub, 0755) == 0);
    CHECK(cnd_mkdir_p(sub, 0755) == 0);
    CHECK(cnd_file_write_atomic(path, "0123456789", 10, 0600) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    uint8_t *d;
    size_t n;
    CHECK(cnd_file_read(path, 100, &d, &n) == 0 && n == 10 && !memcmp(d, "0123456789", 10));
    free(d);
    CHECK(cnd_file_read(path, 5, &d, &n) == CND_ERANGE);
    CHECK(strstr(cnd_err_detail(), "file.bin") != NULL);
    CHECK(cnd_file_read("/nonexistent/x", 5, &d, &n) == CND_EIO);
    /* Plain files pass through the gzip reader; a gzip file is inflated; a truncated gzip
     * file is an error, not silently short data. */
    CHECK(cnd_file_read_gz(path, 100, &d, &n) == 0 && n == 10);
    free(d);
    snprintf(gz, sizeof gz, "%s/x.gz", dir);
    gzFile g = gzopen(gz, "wb");
    char big[5000];
    for (int i = 0; i < 5000; i++) big[i] = (char)(i * 7);
    gzwrite(g, big, sizeof big);
    gzclose(g);
    CHECK(cnd_file_read_gz(gz, 1 << 20, &d, &n) == 0 && n == 5000 && !memcmp(d, big, 5000));
    free(d);
    CHECK(cnd_file_read_gz(gz, 100, &d, &n) == CND_ERANGE);
    /* larger than the reader's first buffer: it grows by doubling, up to the limit exactly */
    size_t nl = 300001;
    char *large = malloc(nl);
    for (size_t i = 0; i < nl; i++) large[i] = (char)(i * 31 / 7);
    g = gzopen(gz, "wb");
    CHECK(gzwrite(g, large, (unsigned)nl) == (int)nl);
    gzclose(g);
    CHECK(cnd_file_read_gz(gz, 1 << 20, &d, &n) == 0 && n == nl && !memcmp(d, large, nl));
    free(d);
    CHECK(cnd_file_read_gz(gz, nl, &d, &n) == 0 && n == nl && !memcmp(d, large, nl));
    free(d);
    CHECK(cnd_file_read_gz(gz, nl - 1, &d, &n) == CND_ERANGE);
    free(large);
    CHECK(truncate(gz, 30) == 0);
    CHECK(cnd_file_read_gz(gz, 1 << 20, &d, &n) == CND_EFORMAT);
    /* A corrupt deflate stream and a directory: zlib's message is in the detail (it used to be
     * read after gzclose had freed it). */
    g = gzopen(gz, "wb");
    gzwrite(g, big, sizeof big);
    gzclose(g);
    FILE *f = fopen(gz, "r+b");
    CHECK(f && fseek(f, 12, SEEK_SET) == 0 && fwrite("\xff\xff\xff\xff\xff\xff", 1, 6, f) == 6);
    if (f) fclose(f);
    CHECK(cnd_file_read_gz(gz, 1 << 20, &d, &n) == CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "x.gz: corrupt gzip stream after 0 bytes: ") != NULL);
    CHECK(cnd_file_read_gz(dir, 1 << 20, &d, &n) == CND_EIO);
    CHECK(strstr(cnd_err_detail(), "not a regular file") != NULL);
    CHECK(cnd_file_read_gz("/nonexistent/x.gz", 1 << 20, &d, &n) == CND_EIO);
    /* No temp files are left behind. */
    snprintf(path, sizeof path, "rm -rf %s", dir);
    CHECK(system(path) == 0);
}

/* ISO 8601 for any int64: the years 0000..9999 as themselves, anything else as a fixed text,
 * always NUL-terminated inside the 21 bytes the contract gives (a year past 9999 used to leave
 * the buffer unterminated, and `audit check-proof` printed the stack bytes after it). */
static void test_iso8601(void)
{
    static const struct {
        int64_t t;
        const char *want;
    } cases[] = {
        {0, "1970-01-01T00:00:00Z"},
        {1767225600, "2026-01-01T00:00:00Z"},
        {-1, "1969-12-31T23:59:59Z"},
        {253402300799, "9999-12-31T23:59:59Z"},
        {-62167219200, "0000-01-01T00:00:00Z"},
        {253402300800, "(time out of range)"},
        {-62167219201, "(time out of range)"},
        {INT64_MAX / 1000, "(time out of range)"},
        {INT64_MAX, "(time out of range)"},
        {INT64_MIN, "(time out of range)"},
        {(int64_t)1 << 40, "(time out of range)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out = malloc(21); /* exactly the documented size, so ASan sees any overrun */
        memset(out, 'X', 21);
        CHECK(cnd_iso8601(out, cases[i].t) == out);
        CHECK(memchr(out, 0, 21) != NULL);
        if (memchr(out, 0, 21)) CHECK(strcmp(out, cases[i].want) == 0);
        free(out);
    }
}

static void test_cli(void)
{
    const char *s = "def";
    long i = 3;
    double x = 0.5;
    int f = 0;
    const cnd_opt_t opts[] = {{"name", CND_OPT_STR, &s, "S", "a string"},
                              {"count", CND_OPT_INT, &i, "N", "an int", 1, 10},
                              {"rate", CND_OPT_DBL, &x, "X", "a double"},
                              {"json", CND_OPT_FLAG, &f, NULL, "a flag"},
                              {0}};
    const cnd_cli_t cli = {"t [options] FILE", "test", opts, 1, 2};
    char *argv1[] = {"t", "--name", "abc", "file1", "--count=7", "--json", "--rate", "2.5", NULL};
    int np;
    char **pos;
    CHECK(cnd_cli_parse(&cli, 8, argv1, &np, &pos) == 0);
    CHECK(!strcmp(s, "abc") && i == 7 && f == 1 && x == 2.5 && np == 1 && !strcmp(pos[0], "file1"));
    char *argv2[] = {"t", "--count", "11", "f", NULL};
    CHECK(cnd_cli_parse(&cli, 4, argv2, &np, &pos) == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "--count") != NULL);
    char *argv3[] = {"t", "--bogus", "f", NULL};
    CHECK(cnd_cli_parse(&cli, 3, argv3, &np, &pos) == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "bogus") != NULL);
    char *argv4[] = {"t", NULL};
    CHECK(cnd_cli_parse(&cli, 1, argv4, &np, &pos) == CND_EINVAL);
    char *argv5[] = {"t", "--count", "x", "f", NULL};
    CHECK(cnd_cli_parse(&cli, 4, argv5, &np, &pos) == CND_EINVAL);
    char *argv6[] = {"t", "f", "--name", NULL};
    CHECK(cnd_cli_parse(&cli, 3, argv6, &np, &pos) == CND_EINVAL);
}

int main(void)
{
    test_sha256_kat();
    test_rng();
    test_bytes();
    test_files();
    test_iso8601();
    test_cli();
    return check_result("test_common");
}
