/* test_data.c: IDX and CSV loaders on good and broken files; class maps; splits; partitions. */
#include "check.h"
#include "classmap.h"
#include "bytes.h"
#include "data.h"
#include "error.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char s_dir[64];

static const char *path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", s_dir, name);
    return buf[k];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void write_file(const char *p, const void *d, size_t n)
{
    FILE *f = fopen(p, "wb");
    fwrite(d, 1, n, f);
    fclose(f);
}

/* Writes n images of h x w and n labels; returns nothing. */
static void write_idx(const char *img, const char *lab, uint32_t n, uint32_t h, uint32_t w,
                      uint32_t nlab, int gz)
{
    size_t isz = 16 + (size_t)n * h * w, lsz = 8 + nlab;
    uint8_t *ib = malloc(isz), *lb = malloc(lsz);
    put_be32(ib, 0x803);
    put_be32(ib + 4, n);
    put_be32(ib + 8, h);
    put_be32(ib + 12, w);
    for (size_t i = 16; i < isz; i++) ib[i] = (uint8_t)(i * 31);
    put_be32(lb, 0x801);
    put_be32(lb + 4, nlab);
    for (uint32_t i = 0; i < nlab; i++) lb[8 + i] = (uint8_t)(i % 10);
    if (gz) {
        gzFile g = gzopen(img, "wb");
        gzwrite(g, ib, (unsigned)isz);
        gzclose(g);
        g = gzopen(lab, "wb");
        gzwrite(g, lb, (unsigned)lsz);
        gzclose(g);
    } else {
        write_file(img, ib, isz);
        write_file(lab, lb, lsz);
    }
    free(ib);
    free(lb);
}

static void expect_fail(int rc, const char *needle)
{
    CHECK(rc < 0);
    if (!strstr(cnd_err_detail(), needle))
        fprintf(stderr, "detail '%s' lacks '%s'\n", cnd_err_detail(), needle);
    CHECK(strstr(cnd_err_detail(), needle) != NULL);
}

static void test_idx(void)
{
    cnd_dataset_t *ds = NULL;
    write_idx(path("i.idx"), path("l.idx"), 20, 4, 3, 20, 0);
    CHECK(cnd_data_load_idx(&ds, path("i.idx"), path("l.idx")) == 0);
    CHECK(ds && ds->n == 20 && ds->shape.h == 4 && ds->shape.w == 3 && ds->n_classes == 10);
    CHECK(ds && ds->x[0] == (float)(uint8_t)(16 * 31) && ds->y[13] == 3);
    cnd_data_destroy(&ds);
    write_idx(path("i.gz"), path("l.gz"), 20, 4, 3, 20, 1);
    CHECK(cnd_data_load_idx(&ds, path("i.gz"), path("l.gz")) == 0 && ds->n == 20);
    cnd_data_destroy(&ds);
    /* Count mismatch. */
    write_idx(path("i2.idx"), path("l2.idx"), 20, 4, 3, 19, 0);
    expect_fail(cnd_data_load_idx(&ds, path("i2.idx"), path("l2.idx")), "has 19 labels");
    CHECK(ds == NULL);
    /* Truncated data and truncated header. */
    write_idx(path("i3.idx"), path("l3.idx"), 20, 4, 3, 20, 0);
    CHECK(truncate(path("i3.idx"), 16 + 20 * 12 - 5) == 0);
    expect_fail(cnd_data_load_idx(&ds, path("i3.idx"), path("l3.idx")), "truncated");
    CHECK(truncate(path("i3.idx"), 10) == 0);
    expect_fail(cnd_data_load_idx(&ds, path("i3.idx"), path("l3.idx")), "truncated IDX header");
    /* Wrong magic (labels file given as images). */
    expect_fail(cnd_data_load_idx(&ds, path("l.idx"), path("l.idx")), "bad IDX magic");
    /* Truncated gzip stream. */
    CHECK(truncate(path("i.gz"), 40) == 0);
    expect_fail(cnd_data_load_idx(&ds, path("i.gz"), path("l.gz")), "i.gz");
    /* Missing file. */
    expect_fail(cnd_data_load_idx(&ds, path("nope"), path("l.idx")), "cannot open");
    expect_fail(cnd_data_open(&ds, "fmnist:/nonexistent", "train"), "not found");
    expect_fail(cnd_data_open(&ds, "bogus:x", "train"), "expected fmnist");
}

/* CSV: the limits (classes, columns, field length), quoting corners and row growth. */
static void test_csv_limits(void)
{
    cnd_dataset_t *ds = NULL;
    cnd_buf_t b;
    /* 3000 rows (the row arrays grow past their first 1024), label in the middle, quoted
     * fields with a comma, a doubled quote and a newline (counted in the line numbers). */
    cnd_buf_init(&b);
    cnd_buf_put(&b, "f1,label,\"f,2\"\n", 15);
    for (int i = 0; i < 3000; i++) {
        char row[64];
        int n = snprintf(row, sizeof row, "%d,c%d,%d.5\n", i, i % 7, -i);
        cnd_buf_put(&b, row, (size_t)n);
    }
    cnd_buf_put(&b, "1,\"a\"\"b\nc\",2\n", 13);
    cnd_buf_put(&b, "1,x,y\n", 6);
    write_file(path("big.csv"), b.data, b.len);
    expect_fail(cnd_data_load_csv(&ds, path("big.csv"), NULL),
                ":3004:3: column 'f,2': 'y' is not a finite number");
    CHECK(ds == NULL);
    b.len -= 6;
    write_file(path("big.csv"), b.data, b.len);
    CHECK(cnd_data_load_csv(&ds, path("big.csv"), NULL) == 0);
    CHECK(ds && ds->n == 3001 && ds->shape.c == 2 && ds->n_classes == 8);
    if (ds) {
        CHECK(!strcmp(ds->class_names[0], "a\"b\nc") && !strcmp(ds->class_names[7], "c6"));
        CHECK(ds->y[2999] == 2999 % 7 + 1 && ds->y[3000] == 0);
        CHECK(ds->x[2 * 2999] == 2999.0f && ds->x[2 * 2999 + 1] == -2999.5f);
    }
    cnd_data_destroy(&ds);
    cnd_buf_free(&b);
    /* 256 classes are fine, 257 are not. */
    cnd_buf_init(&b);
    cnd_buf_put(&b, "x,label\n", 8);
    for (int i = 0; i < 257; i++) {
        char row[32];
        int n = snprintf(row, sizeof row, "%d,k%d\n", i, i);
        cnd_buf_put(&b, row, (size_t)n);
    }
    write_file(path("k.csv"), b.data, b.len);
    expect_fail(cnd_data_load_csv(&ds, path("k.csv"), NULL),
                ":258: more than 256 distinct classes in 'label'");
    CHECK(ds == NULL);
    write_file(path("k.csv"), b.data, b.len - 9);
    CHECK(cnd_data_load_csv(&ds, path("k.csv"), NULL) == 0);
    CHECK(ds && ds->n == 256 && ds->n_classes == 256);
    cnd_data_destroy(&ds);
    cnd_buf_free(&b);
    /* 4096 header columns are fine, 4097 are not. */
    cnd_buf_init(&b);
    cnd_buf_put(&b, "label", 5);
    for (int i = 1; i < 4097; i++) {
        char col[16];
        int n = snprintf(col, sizeof col, ",c%d", i);
        cnd_buf_put(&b, col, (size_t)n);
    }
    cnd_buf_put(&b, "\n", 1);
    write_file(path("w.csv"), b.data, b.len);
    expect_fail(cnd_data_load_csv(&ds, path("w.csv"), NULL), ":1: more than 4096 columns");
    CHECK(ds == NULL);
    cnd_buf_free(&b);
    /* A field of 1024 bytes or more, quoted or not. */
    char longf[1100];
    memset(longf, '7', sizeof longf);
    memcpy(longf, "a,label\n", 8);
    memcpy(longf + sizeof longf - 3, ",1\n", 3);
    write_file(path("l.csv"), longf, sizeof longf);
    expect_fail(cnd_data_load_csv(&ds, path("l.csv"), NULL), ":2:1: field too long");
    longf[8] = '"';
    longf[sizeof longf - 4] = '"';
    write_file(path("l.csv"), longf, sizeof longf);
    expect_fail(cnd_data_load_csv(&ds, path("l.csv"), NULL), ":2:1: field too long");
    const struct {
        const char *text, *needle;
    } bad[] = {
        {"a,label\n\"1\"x,2\n", ":2:1: text after closing quote"},
        {"a,label\n1,2\n\n\n4,\n", ":5:2: the class column 'label' is empty"},
        {"a,label\n\"1\n\n\",2\n1e999,3\n", ":5:1: column 'a': '1e999' is not a finite"},
        {"a,label\n-inf,2\n", "'-inf' is not a finite number"},
        {"a,label\n \n\t\r\n", "no data rows"},
        {"\n", "no column named 'label'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path("b.csv"), bad[i].text, strlen(bad[i].text));
        expect_fail(cnd_data_load_csv(&ds, path("b.csv"), NULL), bad[i].needle);
        CHECK(ds == NULL);
    }
    /* Spaces around unquoted and after quoted fields, CRLF, no final newline. */
    const char *ok = "a , label\r\n\"2\" , x \r\n3,y";
    write_file(path("s.csv"), ok, strlen(ok));
    CHECK(cnd_data_load_csv(&ds, path("s.csv"), NULL) == 0);
    CHECK(ds && ds->n == 2 && ds->x[0] == 2.0f && ds->x[1] == 3.0f && ds->y[1] == 1);
    cnd_data_destroy(&ds);
}

static void test_csv(void)
{
    cnd_dataset_t *ds = NULL;
    const char *good = "age,bp,\"diag\",chol\n"
                       "50,120.5,sick,200\r\n"
                       "\"61\",130,healthy,1e2\n"
                       "\n"
                       "40, -3 ,sick,180\n";
    write_file(path("g.csv"), good, strlen(good));
    CHECK(cnd_data_load_csv(&ds, path("g.csv"), "diag") == 0);
    CHECK(ds && ds->n == 3 && ds->shape.c == 3 && ds->n_classes == 2);
    if (ds) {
        CHECK(!strcmp(ds->class_names[0], "healthy") && !strcmp(ds->class_names[1], "sick"));
        CHECK(ds->y[0] == 1 && ds->y[1] == 0 && ds->y[2] == 1);
        CHECK(ds->x[0] == 50.0f && ds->x[1] == 120.5f && ds->x[2] == 200.0f);
        CHECK(ds->x[5] == 100.0f && ds->x[7] == -3.0f);
    }
    cnd_data_destroy(&ds);
    /* Numeric labels sort numerically (10 after 9). */
    const char *num = "x,label\n1,10\n2,9\n3,10\n";
    write_file(path("n.csv"), num, strlen(num));
    CHECK(cnd_data_load_csv(&ds, path("n.csv"), NULL) == 0);
    CHECK(ds && !strcmp(ds->class_names[0], "9") && ds->y[0] == 1 && ds->y[1] == 0);
    cnd_data_destroy(&ds);
    const struct {
        const char *text, *needle;
    } bad[] = {
        {"a,label\n1,2\n3\n", ":3: row has 1 columns, header has 2"},
        {"a,label\n1,2,3\n", ":2: row has more than"},
        {"a,label\nx1,2\n", ":2:1: column 'a': 'x1' is not a finite number"},
        {"a,label\n,2\n", ":2:1: missing value '' in column 'a' (na=refuse"},
        {"a,label\nnan,2\n", ":2:1: missing value 'nan'"},
        {"a,label\ninf,2\n", "not a finite number"},
        {"a,label\n1,\n", ":2:2: the class column 'label' is empty"},
        /* finite as a double, infinite as the float features are stored in */
        {"a,label\n1,0\n-4e38,2\n", ":3:1: column 'a': '-4e38' is outside the range of a float"},
        {"a,b,label\n1,1e39,2\n", ":2:2: column 'b': '1e39' is outside the range of a float"},
        {"a,b\n1,2\n", "no column named 'label'"},
        {"a,label\n\"1,2\n", "unterminated quoted field"},
        {"", "empty file"},
        {"a,label\n", "no data rows"},
        {"label\n1\n", "at least one feature"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path("b.csv"), bad[i].text, strlen(bad[i].text));
        expect_fail(cnd_data_load_csv(&ds, path("b.csv"), NULL), bad[i].needle);
        CHECK(ds == NULL);
    }
    CHECK(cnd_data_open(&ds, "csv:/nonexistent.csv,label=y", "train") == CND_EIO);
    test_csv_limits();
}

static void test_split_partition(void)
{
    cnd_dataset_t *ds = NULL, *tr = NULL, *va = NULL;
    write_idx(path("p.idx"), path("pl.idx"), 1000, 2, 2, 1000, 0);
    CHECK(cnd_data_load_idx(&ds, path("p.idx"), path("pl.idx")) == 0);
    if (!ds) return;
    CHECK(cnd_data_split(&tr, &va, ds, 0.2, 5) == 0);
    CHECK(tr && va && tr->n == 800 && va->n == 200);
    cnd_data_destroy(&tr);
    cnd_data_destroy(&va);
    CHECK(cnd_data_split(&tr, &va, ds, 1.5, 5) == CND_EINVAL);
    uint32_t idx[1000];
    size_t counts[7];
    /* IID: near-equal sizes, a permutation. */
    CHECK(cnd_data_partition(idx, counts, ds, 7, 0.0, 1) == 0);
    int seen[1000] = {0};
    size_t tot = 0;
    for (int s = 0; s < 7; s++) {
        tot += counts[s];
        CHECK(counts[s] == 142 || counts[s] == 143);
    }
    CHECK_EQ_INT(tot, 1000);
    for (int i = 0; i < 1000; i++) seen[idx[i]]++;
    int perm = 1;
    for (int i = 0; i < 1000; i++) perm &= seen[i] == 1;
    CHECK(perm);
    /* Dirichlet 0.1: a permutation, every site non-empty, and strong label skew: some site's
     * most common class holds far more than the IID 10%. */
    CHECK(cnd_data_partition(idx, counts, ds, 5, 0.1, 2) == 0);
    memset(seen, 0, sizeof seen);
    tot = 0;
    double max_share = 0;
    size_t off = 0;
    for (int s = 0; s < 5; s++) {
        CHECK(counts[s] >= 1);
        int hist[10] = {0};
        for (size_t i = 0; i < counts[s]; i++) hist[ds->y[idx[off + i]]]++;
        for (int k = 0; k < 10; k++)
            if (counts[s] > 20 && (double)hist[k] / counts[s] > max_share)
                max_share = (double)hist[k] / counts[s];
        off += counts[s];
        tot += counts[s];
    }
    CHECK_EQ_INT(tot, 1000);
    for (int i = 0; i < 1000; i++) seen[idx[i]]++;
    perm = 1;
    for (int i = 0; i < 1000; i++) perm &= seen[i] == 1;
    CHECK(perm);
    CHECK(max_share > 0.3);
    /* Same seed, same partition. */
    uint32_t idx2[1000];
    size_t counts2[5];
    CHECK(cnd_data_partition(idx2, counts2, ds, 5, 0.1, 2) == 0);
    CHECK(!memcmp(idx, idx2, sizeof idx) && !memcmp(counts, counts2, sizeof counts2));
    CHECK(cnd_data_partition(idx, counts, ds, 0, 0.5, 2) == CND_EINVAL);
    /* Normalisation statistics. */
    float mean, std;
    cnd_data_norm_fit(ds, &mean, &std);
    double s = 0;
    for (size_t i = 0; i < ds->n * 4; i++) s += ds->x[i];
    CHECK_NEAR(mean, s / (ds->n * 4), 1e-3);
    CHECK(std > 1.0f);
    cnd_data_destroy(&ds);
}

/* CSV options: delimiters given or detected, NA refused or imputed, a shape. */
static void test_csv_schema(void)
{
    cnd_dataset_t *ds = NULL;
    const char *semi = "a;\"b;c\";label\n1,5;2;x\n3;4;y\n";
    write_file(path("s.csv"), semi, strlen(semi));
    /* detected: ';' (the header has two, no comma outside quotes); "1,5" is then one cell */
    expect_fail(cnd_data_open(&ds, "csv:/nonexistent", "train"), "nonexistent");
    char spec[300];
    snprintf(spec, sizeof spec, "csv:%s", path("s.csv"));
    expect_fail(cnd_data_open(&ds, spec, "train"), ":2:1: column 'a': '1,5' is not a finite");
    const char *tab = "a\tb\tlabel\n1\t2\tx\n3\t4\ty\n";
    write_file(path("t.csv"), tab, strlen(tab));
    snprintf(spec, sizeof spec, "csv:%s", path("t.csv"));
    CHECK(cnd_data_open(&ds, spec, "train") == 0);
    CHECK(ds && ds->n == 2 && ds->shape.c == 2 && ds->x[3] == 4.0f);
    cnd_data_destroy(&ds);
    snprintf(spec, sizeof spec, "csv:%s,delim=comma", path("t.csv"));
    expect_fail(cnd_data_open(&ds, spec, "train"), "no column named 'label'");
    snprintf(spec, sizeof spec, "csv:%s,delim=colon", path("t.csv"));
    expect_fail(cnd_data_open(&ds, spec, "train"), "delim=colon");
    snprintf(spec, sizeof spec, "csv:%s,nope=1", path("t.csv"));
    expect_fail(cnd_data_open(&ds, spec, "train"), "unknown option 'nope'");
    /* NA: refused naming file:line:column by default; NaN then the mean with na=mean */
    const char *na = "p,q,r,s,class\n1,2,3,4,u\n3,NA,5,6,v\n5,?,,8,u\n";
    write_file(path("na.csv"), na, strlen(na));
    snprintf(spec, sizeof spec, "csv:%s,label=class", path("na.csv"));
    expect_fail(cnd_data_open(&ds, spec, "train"), "na.csv:3:2: missing value 'NA' in column 'q'");
    CHECK(ds == NULL);
    snprintf(spec, sizeof spec, "csv:%s,label=class,na=mean,shape=1x2x2", path("na.csv"));
    CHECK(cnd_data_open(&ds, spec, "train") == 0);
    CHECK(ds && ds->n_na == 3 && ds->shape.c == 1 && ds->shape.h == 2 && ds->shape.w == 2);
    float used[4];
    CHECK(ds && cnd_data_impute(ds, NULL, used) == 0);
    CHECK(ds && ds->n_na == 0 && ds->x[5] == 2.0f && ds->x[9] == 2.0f && ds->x[10] == 4.0f);
    CHECK(used[0] == 3.0f && used[1] == 2.0f && used[2] == 4.0f && ds && ds->na_mean);
    cnd_data_destroy(&ds);
    /* with given means (a model's) */
    CHECK(cnd_data_open(&ds, spec, "train") == 0);
    const float given[4] = {0, 9, 7, 0};
    CHECK(ds && cnd_data_impute(ds, given, NULL) == 0);
    CHECK(ds && ds->x[5] == 9.0f && ds->x[10] == 7.0f);
    cnd_data_destroy(&ds);
    snprintf(spec, sizeof spec, "csv:%s,label=class,na=mean,shape=1x28x28", path("na.csv"));
    expect_fail(cnd_data_open(&ds, spec, "train"), "cannot take the shape 1x28x28");
    snprintf(spec, sizeof spec, "csv:%s,label=class,shape=2x", path("na.csv"));
    expect_fail(cnd_data_open(&ds, spec, "train"), "shape=2x");
    /* a column missing everywhere has no mean */
    const char *allna = "p,q,label\n1,NA,u\n2,,v\n";
    write_file(path("an.csv"), allna, strlen(allna));
    snprintf(spec, sizeof spec, "csv:%s,na=mean", path("an.csv"));
    CHECK(cnd_data_open(&ds, spec, "train") == 0);
    if (ds) expect_fail(cnd_data_impute(ds, NULL, NULL), "value 2 is missing in every sample");
    cnd_data_destroy(&ds);
}

/* Class maps: a site's labels go to the job's indices by name (or as indices), never by their
 * rank among the values the site happens to hold; an unknown label is refused, ds unchanged. */
static void test_class_map(void)
{
    cnd_dataset_t *ds = NULL;
    const char *t = "x,label\n1,dog\n2,bird\n3,dog\n";
    write_file(path("m.csv"), t, strlen(t));
    CHECK(cnd_data_load_csv(&ds, path("m.csv"), NULL) == 0);
    size_t present[4];
    CHECK_EQ_INT(cnd_data_map_classes(ds, "cat,dog,fish,bird", present), 0);
    CHECK(ds && ds->n_classes == 4 && ds->y[0] == 1 && ds->y[1] == 3 && ds->y[2] == 1);
    CHECK(present[0] == 0 && present[1] == 2 && present[2] == 0 && present[3] == 1);
    CHECK(ds && !strcmp(ds->class_names[2], "fish"));
    cnd_data_destroy(&ds);
    /* labels {0,2} stay 0 and 2 (sorted distinct values would make them 0 and 1) */
    const char *n = "x,label\n1,0\n2,2\n3,2\n";
    write_file(path("m.csv"), n, strlen(n));
    CHECK(cnd_data_load_csv(&ds, path("m.csv"), NULL) == 0);
    CHECK(ds && ds->n_classes == 2 && ds->y[1] == 1); /* as loaded: ranked */
    CHECK_EQ_INT(cnd_data_map_classes(ds, "a,b,c", NULL), 0);
    CHECK(ds && ds->y[0] == 0 && ds->y[1] == 2 && ds->y[2] == 2);
    cnd_data_destroy(&ds);
    /* an exact name wins over an index; "07" is a name; an unknown label changes nothing */
    CHECK_EQ_INT(cnd_classmap_find("2,0,1", "0"), 1);
    CHECK_EQ_INT(cnd_classmap_find("a,b", "1"), 1);
    CHECK_EQ_INT(cnd_classmap_find("a,b", "01"), -1);
    CHECK_EQ_INT(cnd_classmap_find("a,b", "2"), -1);
    const char *u = "x,label\n1,dog\n2,wolf\n";
    write_file(path("m.csv"), u, strlen(u));
    CHECK(cnd_data_load_csv(&ds, path("m.csv"), NULL) == 0);
    expect_fail(cnd_data_map_classes(ds, "cat,dog", NULL), "label 'wolf' (1 samples) is not one");
    CHECK(ds && ds->n_classes == 2 && ds->y[0] == 0 && ds->y[1] == 1);
    cnd_data_destroy(&ds);
    /* IDX labels are named by value; maps are checked */
    write_idx(path("m.idx"), path("ml.idx"), 3, 2, 2, 3, 0);
    CHECK(cnd_data_load_idx(&ds, path("m.idx"), path("ml.idx")) == 0);
    CHECK(ds && ds->class_names && !strcmp(ds->class_names[2], "2"));
    char map[64];
    CHECK_EQ_INT(ds ? cnd_data_classmap(ds, map, sizeof map) : -1, 0);
    CHECK(!strcmp(map, "0,1,2"));
    cnd_data_destroy(&ds);
    expect_fail(cnd_classmap_check("a,,b", 3, NULL), "empty");
    expect_fail(cnd_classmap_check("a,b", 3, NULL), "2 names for 3 classes");
    expect_fail(cnd_classmap_check("a,b,a", 3, NULL), "'a' twice");
    expect_fail(cnd_classmap_check("a\tb,c", 2, NULL), "control byte");
    CHECK_EQ_INT(cnd_classmap_append(map, sizeof map, "x,y"), CND_EINVAL);
    cnd_classmap_default(map, sizeof map, 3);
    CHECK(!strcmp(map, "0,1,2"));
}

int main(void)
{
    snprintf(s_dir, sizeof s_dir, "/tmp/cnd_test_data_XXXXXX");
    if (!mkdtemp(s_dir)) return 1;
    test_idx();
    test_csv();
    test_csv_schema();
    test_class_map();
    test_split_partition();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    if (system(cmd) != 0) return 1;
    return check_result("test_data");
}
