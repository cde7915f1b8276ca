/*
 * test_federation_demo.c: `condenser demo` end to end, small (3,000 training images, 2 rounds,
 * the last with QAT): the separate processes come up and go down, the job completes, the int8
 * artifact is signed and its manifest verifies, every audit log verifies and every site
 * reconciles with the coordinator, and the JSON result carries the table's quantities.
 * Skipped (passes) when Fashion-MNIST is not installed.
 */
#include "check.h"
#include "data.h"
#include "fileio.h"
#include "test_federation_fixture.h"

#include <string.h>

static double s_num(const char *json, const char *key)
{
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    CHECK(p != NULL);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

static int s_count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

int main(void)
{
    if (!cnd_file_exists(CND_FMNIST_DIR "/train-images-idx3-ubyte.gz")) {
        fprintf(stderr, "Fashion-MNIST not installed: skipping the demo test\n");
        return 0;
    }
    fx_fed_t f;
    fx_fed_init(&f, "demo", 3);
    char work[600], out[640], log[640];
    fx_path(work, sizeof work, f.root, "work");
    fx_path(out, sizeof out, f.root, "demo.json");
    fx_path(log, sizeof log, f.root, "demo.log");
    /* stdout (the JSON) and the progress lines on stderr go to separate files */
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0) _exit(126);
        dup2(fo, 1);
        dup2(fe, 2);
        const char *argv[] = {fx_bin(),           "demo", "--workdir",    work,
                              "--train-subset",   "3000", "--public",     "1000",
                              "--rounds",         "2",    "--qat-rounds", "1",
                              "--teacher-epochs", "1",    "--json",       NULL};
        execv(fx_bin(), (char **)argv);
        _exit(127);
    }
    CHECK(pid > 0);
    int st = fx_wait(pid, 150);
    CHECK(st == 0);
    if (st != 0) fx_dump(log);

    size_t n = 0;
    uint8_t *j = NULL;
    CHECK(cnd_file_read(out, 1 << 20, &j, &n) == 0); /* NUL-terminated */
    char *json = (char *)j;
    if (json) {
        CHECK(strstr(json, "\"manifest_verified\":true") != NULL);
        CHECK(strstr(json, "\"audit_logs_verified\":true") != NULL);
        CHECK(s_count(json, "\"reconciled\":true") == 3);
        CHECK(s_count(json, "\"reconciled\":false") == 0);
        CHECK(s_num(json, "rounds") == 2);
        CHECK(s_num(json, "ring_bits") == 10); /* 8-bit values, 3 sites */
        /* 2 rounds on 3,000 images: well above chance (10 classes), not a benchmark */
        CHECK(s_num(json, "federated_float_accuracy") > 0.4);
        CHECK(s_num(json, "federated_int8_accuracy") > 0.4);
        CHECK(s_num(json, "central_float_accuracy") > 0.4);
        double art = s_num(json, "artifact_bytes"), fl = s_num(json, "float_model_bytes");
        CHECK(art > 0 && art < fl / 3);
        double share = s_num(json, "secagg_share_of_round_time");
        CHECK(share > 0 && share < 1);
        /* progress was visible while it ran */
        uint8_t *l = NULL;
        size_t ln = 0;
        CHECK(cnd_file_read(log, 1 << 20, &l, &ln) == 0);
        CHECK(l && ln > 0 && memmem(l, ln, "round 2/2", 9) != NULL);
        free(l);
    }
    free(json);
    char p[700];
    fx_path(p, sizeof p, work, "student-int8.cndq");
    CHECK(cnd_file_exists(p));
    fx_path(p, sizeof p, work, "student-int8.cndq.manifest");
    CHECK(cnd_file_exists(p));
    fx_fed_cleanup(&f);
    return check_result("test_federation_demo");
}
