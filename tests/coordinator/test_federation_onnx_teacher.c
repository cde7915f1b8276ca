/*
 * test_federation_onnx_teacher.c: a federated job whose teacher is each site's own ONNX model
 * (issue 15): `job create --teacher-local NAME`, and in every site's agent.ini
 * `[teachers] NAME = teacher.onnx` with `NAME.preprocess`. The ONNX file is the fixture's
 * teacher written by `condenser export --onnx`. Three sites on loopback run two rounds: every
 * round ends ok with all three, each agent says it used the ONNX teacher, and no 32-byte piece
 * of the teacher file is among the bytes the coordinator received (--capture). A site whose
 * ONNX teacher lacks its preprocessing spec is refused at start, naming the key.
 */
#include "check.h"
#include "federation_fixture.h"

#include <string.h>

static int s_contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t k)
{
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return 1;
    return 0;
}

static int s_has(const char *path, const char *text)
{
    uint8_t *b = NULL;
    size_t n = 0;
    int ok = cnd_file_read(path, 1 << 22, &b, &n) == 0 && b && strstr((char *)b, text);
    free(b);
    return ok;
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "onnx-teacher", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    char log[400], cnd[400], onnx[400];
    fx_path(log, sizeof log, f.root, "setup.log");
    fx_path(cnd, sizeof cnd, f.root, "teacher.cnd");
    fx_path(onnx, sizeof onnx, f.root, "teacher.onnx");
    const char *ex[] = {"export", cnd, "--onnx", "--out", onnx, NULL};
    CHECK_EQ_INT(fx_run(log, ex), 0);
    for (int s = 0; s < 3; s++) {
        FILE *ini = fopen(f.site_ini[s], "a");
        CHECK(ini != NULL);
        if (!ini) continue;
        fprintf(ini, "[teachers]\nvendor = ../teacher.onnx\nvendor.preprocess = mean=100 std=60\n");
        fclose(ini);
    }
    /* without the preprocessing spec: refused when the agent starts, naming the key */
    char bad[400];
    fx_path(bad, sizeof bad, f.root, "bad.ini");
    uint8_t *ib = NULL;
    size_t in = 0;
    CHECK_EQ_INT(cnd_file_read(f.site_ini[0], 1 << 16, &ib, &in), 0);
    if (ib) {
        char *cut = strstr((char *)ib, "vendor.preprocess");
        if (cut) *cut = 0;
        FILE *b = fopen(bad, "w");
        if (b) {
            fputs((char *)ib, b);
            fclose(b);
        }
    }
    free(ib);
    char blog[400];
    fx_path(blog, sizeof blog, f.root, "bad.log");
    const char *ba[] = {"agent", "--config", bad, "--max-seconds", "5", NULL};
    CHECK(fx_run(blog, ba) != 0);
    CHECK(s_has(blog, "vendor.preprocess is required"));

    const char *job[] = {"job",
                         "create",
                         "--dir",
                         f.coord,
                         "--student-arch",
                         FX_STUDENT,
                         "--teacher-local",
                         "vendor",
                         "--input",
                         "1,8,8",
                         "--classes",
                         "4",
                         "--batch",
                         "16",
                         "--lr",
                         "0.01",
                         "--rounds",
                         "2",
                         "--sites",
                         "3",
                         "--quorum",
                         "3",
                         NULL};
    CHECK_EQ_INT(fx_run(log, job), 0);
    char cap[400];
    fx_path(cap, sizeof cap, f.root, "capture.bin");
    pid_t coord = fx_start_coordinator(&f, cap);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent(&f, s, NULL);
    for (int s = 0; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 90), 0);
    CHECK_EQ_INT(fx_wait(coord, 30), 0);

    cnd_round_rec_t *r = NULL;
    size_t nr = 0;
    CHECK_EQ_INT(fx_rounds(&f, &r, &nr), 0);
    CHECK_EQ_INT(nr, 2);
    for (size_t i = 0; i < nr; i++) {
        CHECK(strcmp(r[i].outcome, "ok") == 0);
        CHECK_EQ_INT(r[i].survivors, 3);
    }
    fx_rounds_free(r, nr);
    for (int s = 0; s < 3; s++) {
        char p[400];
        snprintf(p, sizeof p, "%s/agent.log", f.site_dir[s]);
        CHECK(s_has(p, "local ONNX teacher"));
    }
    /* the teacher never left a site: no piece of its file was received */
    uint8_t *c = NULL, *t = NULL;
    size_t cn = 0, tn = 0;
    CHECK_EQ_INT(cnd_file_read(cap, 1 << 28, &c, &cn), 0);
    CHECK_EQ_INT(cnd_file_read(onnx, 1 << 22, &t, &tn), 0);
    CHECK(cn > 1000 && tn > 1000);
    int found = 0;
    for (size_t off = 0; c && t && off + 32 <= tn; off += 128)
        found |= s_contains(c, cn, t + off, 32);
    CHECK(!found);
    free(c);
    free(t);
    if (check_failures) {
        char p[400];
        fx_path(p, sizeof p, f.root, "coordinator.log");
        fx_dump(p);
        fx_dump(log);
        fx_dump(blog);
        for (int s = 0; s < 3; s++) {
            snprintf(p, sizeof p, "%s/agent.log", f.site_dir[s]);
            fx_dump(p);
        }
    }
    fx_fed_cleanup(&f);
    return check_result("test_federation_onnx_teacher");
}
