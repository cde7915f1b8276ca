/*
 * test_agent_config.c: the site agent's INI configuration (agent/agent_config.c): paths relative
 * to the file, the pinned coordinator key, teachers, limits, the site's [policy]; every bad line
 * refused with its line number, section and key. And the rounds a site served
 * (agent/agent_store.c, agent_served): a replayed D, an attempt served twice, a round whose
 * unmask was answered, too many attempts, each refused, and still after reopening the file.
 */
#include "check.h"
#include "agent_config.h"
#include "agent_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fileio.h"
#include "identity.h"

static char s_dir[256];

static void test_agent_config(void)
{
    char ini[300], pub[300];
    snprintf(ini, sizeof ini, "%s/agent.ini", s_dir);
    snprintf(pub, sizeof pub, "%s/coord.pub", s_dir);
    uint8_t pk[32];
    for (int i = 0; i < 32; i++) pk[i] = (uint8_t)(i + 1);
    CHECK_EQ_INT(cnd_pubkey_write(pub, pk), 0);
    const char *good = "[site]\nname = h-1\ndata = idx:img.idx,lab.idx\nvalidation = 0.25\n"
                       "[identity]\nkey = keys/identity.key\ncertificate = h1.pem\n"
                       "[coordinator]\nendpoint = tcp://10.0.0.1:7700\npublic_key = coord.pub\n"
                       "ca_cert = /etc/ca.crt\nca_crl = crl.pem\n"
                       "[teachers]\nbig = /models/t.cnd\nvendor = v.onnx\n"
                       "vendor.preprocess = scale=1/255 mean=0.5 std=0.25\n[limits]\nthreads = "
                       "2\nmemory_mb = 512\n";
    CHECK_EQ_INT(cnd_file_write_atomic(ini, good, strlen(good), 0644), 0);
    cnd_agent_config_t c;
    CHECK_EQ_INT(cnd_agent_config_load(&c, ini), 0);
    CHECK(strcmp(c.name, "h-1") == 0);
    char want[700];
    snprintf(want, sizeof want, "idx:%s/img.idx,%s/lab.idx", s_dir, s_dir);
    CHECK(strcmp(c.data, want) == 0);
    snprintf(want, sizeof want, "%s/keys/identity.key", s_dir);
    CHECK(strcmp(c.key, want) == 0);
    snprintf(want, sizeof want, "%s/agent.db", s_dir);
    CHECK(strcmp(c.state, want) == 0);
    CHECK(memcmp(c.coordinator_pk, pk, 32) == 0);
    CHECK(strcmp(c.ca_cert, "/etc/ca.crt") == 0);
    snprintf(want, sizeof want, "%s/crl.pem", s_dir);
    CHECK(strcmp(c.ca_crl, want) == 0);
    CHECK_NEAR(c.validation, 0.25, 0);
    CHECK_EQ_INT(c.threads, 2);
    CHECK_EQ_INT(c.memory_mb, 512);
    CHECK(cnd_agent_config_teacher(&c, "big") &&
          strcmp(cnd_agent_config_teacher(&c, "big"), "/models/t.cnd") == 0);
    CHECK(cnd_agent_config_teacher(&c, "small") == NULL);
    snprintf(want, sizeof want, "%s/v.onnx", s_dir);
    CHECK(cnd_agent_config_teacher(&c, "vendor") &&
          strcmp(cnd_agent_config_teacher(&c, "vendor"), want) == 0);
    CHECK(strcmp(cnd_agent_config_teacher_prep(&c, "vendor"), "scale=1/255 mean=0.5 std=0.25") ==
          0);
    CHECK(strcmp(cnd_agent_config_teacher_prep(&c, "big"), "") == 0);
    struct {
        const char *text, *want;
    } bad[] = {
        {"[site]\nname = a\nnmae = b\n", ":3: [site] nmae: unknown key"},
        {"[site]\nname = a\nvalidation = 2\n", ":3: [site] validation"},
        {"[limits]\nthreads = 0\n", ":2: [limits] threads"},
        {"[coordinator]\npublic_key = nothex\n", ":2: [coordinator] public_key"},
        {"[coordinator]\nendpoint = http://x\n", ":2: [coordinator] endpoint"},
        {"[weird]\na = b\n", ":2: [weird] a: unknown section"},
        {"[policy]\nmax_attempts = 0\n", ":2: [policy] max_attempts"},
        {"[policy]\nlr_min = -1\n", ":2: [policy] lr_min"},
        {"[policy]\nmax_epochs = 1.5\n", ":2: [policy] max_epochs"},
        {"[teachers]\nt = a.cnd\nt.preprocess = mean=1\n",
         ":3: [teachers] t.preprocess: only an .onnx teacher"},
        {"[teachers]\nu.preprocess = mean=1\nu = a.onnx\n",
         ":2: [teachers] u.preprocess: no teacher of that name before it"},
        {"[teachers]\nt = a.onnx\nt.preprocess = mean=1\nt.preprocess = mean=2\n",
         ":4: [teachers] t.preprocess: set twice"},
        {"[teachers]\nt = a.onnx\nt.preprocess = colour=2\n", ":3: [teachers] t.preprocess"},
        {"[site]\nname = a\ndata = fmnist\n[identity]\nkey = k\ncertificate = c\n"
         "[coordinator]\nendpoint = tcp://h:1\npublic_key = coord.pub\nca_cert = x\n"
         "ca_crl = y\n[teachers]\nt = a.onnx\n",
         "[teachers] t.preprocess is required"},
        {"[site]\nname = a\n", "[site] data is required"},
        {"[site]\nname = a\ndata = fmnist\n[identity]\nkey = k\n[coordinator]\n"
         "endpoint = tcp://h:1\npublic_key = coord.pub\n",
         "[identity] certificate is required"},
        {"[site]\nname = a\ndata = fmnist\n[identity]\nkey = k\ncertificate = c\n"
         "[coordinator]\nendpoint = tcp://h:1\npublic_key = coord.pub\nca_cert = x\n",
         "[coordinator] ca_crl is required"},
        {"[site]\nname = a b\ndata = fmnist\n[identity]\nkey = k\ncertificate = c\n"
         "[coordinator]\nendpoint = tcp://h:1\npublic_key = coord.pub\nca_cert = x\n"
         "ca_crl = y\n",
         "not a valid node name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(cnd_file_write_atomic(ini, bad[i].text, strlen(bad[i].text), 0644), 0);
        int rc = cnd_agent_config_load(&c, ini);
        CHECK(rc != 0);
        if (!strstr(cnd_err_detail(), bad[i].want))
            fprintf(stderr, "config case %zu: '%s' lacks '%s'\n", i, cnd_err_detail(), bad[i].want);
        CHECK(strstr(cnd_err_detail(), bad[i].want) != NULL);
    }
    snprintf(want, sizeof want, "%s/missing.ini", s_dir);
    CHECK_EQ_INT(cnd_agent_config_load(&c, want), CND_EIO);
}

/* [policy]: defaults, values, and what a job outside it gets. */
static void test_policy(void)
{
    char ini[300];
    snprintf(ini, sizeof ini, "%s/policy.ini", s_dir);
    const char *base = "[site]\nname = p\ndata = fmnist\n[identity]\nkey = k\ncertificate = c\n"
                       "[coordinator]\nendpoint = tcp://h:1\npublic_key = coord.pub\n"
                       "ca_cert = x\nca_crl = y\n";
    CHECK_EQ_INT(cnd_file_write_atomic(ini, base, strlen(base), 0644), 0);
    cnd_agent_config_t c;
    CHECK_EQ_INT(cnd_agent_config_load(&c, ini), 0);
    CHECK_EQ_INT(c.max_attempts, 4);
    CHECK_EQ_INT(cnd_agent_config_policy(&c, 1e-3f, 1, 10), 0);
    CHECK_EQ_INT(cnd_agent_config_policy(&c, 1e-9f, 1, 10), CND_EPERM); /* the probe */
    CHECK(strstr(cnd_err_detail(), "learning rate") != NULL);
    char text[600];
    snprintf(text, sizeof text,
             "%s[policy]\nmax_attempts = 2\nlr_min = 1e-4\nlr_max = 0.1\nmax_epochs = 5\n"
             "max_rounds = 20\n",
             base);
    CHECK_EQ_INT(cnd_file_write_atomic(ini, text, strlen(text), 0644), 0);
    CHECK_EQ_INT(cnd_agent_config_load(&c, ini), 0);
    CHECK_EQ_INT(c.max_attempts, 2);
    CHECK_EQ_INT(cnd_agent_config_policy(&c, 0.5f, 1, 10), CND_EPERM);
    CHECK_EQ_INT(cnd_agent_config_policy(&c, 0.01f, 6, 10), CND_EPERM);
    CHECK(strstr(cnd_err_detail(), "max_epochs") != NULL);
    CHECK_EQ_INT(cnd_agent_config_policy(&c, 0.01f, 5, 21), CND_EPERM);
    CHECK_EQ_INT(cnd_agent_config_policy(&c, 0.01f, 5, 20), 0);
    snprintf(text, sizeof text, "%s[policy]\nlr_min = 0.5\nlr_max = 0.1\n", base);
    CHECK_EQ_INT(cnd_file_write_atomic(ini, text, strlen(text), 0644), 0);
    CHECK_EQ_INT(cnd_agent_config_load(&c, ini), CND_EINVAL);
}

/* The rounds a site served: every way of asking twice is refused, durably. */
static void test_served(void)
{
    char db[300];
    snprintf(db, sizeof db, "%s/served.db", s_dir);
    cnd_astore_t *s = NULL;
    CHECK_EQ_INT(cnd_astore_open(&s, db, 0), 0);
    if (!s) return;
    uint8_t d[8][32];
    for (int i = 0; i < 8; i++) memset(d[i], 0x10 + i, 32);
    CHECK_EQ_INT(cnd_astore_served_begin(s, 1, 1, 1, d[0], 4), 0);
    CHECK_EQ_INT(cnd_astore_served_begin(s, 1, 2, 1, d[0], 4), CND_EPERM); /* same D */
    CHECK(strstr(cnd_err_detail(), "served before") != NULL);
    CHECK_EQ_INT(cnd_astore_served_begin(s, 1, 1, 1, d[1], 4), CND_EPERM); /* same attempt */
    CHECK(strstr(cnd_err_detail(), "attempt 1 was served before") != NULL);
    CHECK_EQ_INT(cnd_astore_served_begin(s, 1, 1, 2, d[1], 4), 0);
    CHECK_EQ_INT(cnd_astore_served_mark(s, 1, 1, 2, "unmasked"), 0);
    CHECK_EQ_INT(cnd_astore_served_mark(s, 1, 1, 9, "unmasked"), CND_ENOTFOUND);
    cnd_astore_close(&s);
    /* reopened (a restarted agent): the record holds */
    CHECK_EQ_INT(cnd_astore_open(&s, db, 0), 0);
    if (!s) return;
    CHECK_EQ_INT(cnd_astore_served_begin(s, 1, 1, 3, d[2], 4), CND_EPERM);
    CHECK(strstr(cnd_err_detail(), "already answered an unmask request") != NULL);
    CHECK_EQ_INT(cnd_astore_served_begin(s, 1, 1, 3, d[0], 4), CND_EPERM);
    /* attempts of one round: at most max_attempts */
    for (uint32_t a = 1; a <= 2; a++)
        CHECK_EQ_INT(cnd_astore_served_begin(s, 1, 2, a, d[2 + a], 2), 0);
    CHECK_EQ_INT(cnd_astore_served_begin(s, 1, 2, 3, d[5], 2), CND_EPERM);
    CHECK(strstr(cnd_err_detail(), "policy allows 2") != NULL);
    /* another job's round 1 is another round */
    CHECK_EQ_INT(cnd_astore_served_begin(s, 2, 1, 1, d[6], 2), 0);
    cnd_astore_close(&s);
}

int main(void)
{
    snprintf(s_dir, sizeof s_dir, "%s/cnd-agentcfg-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(s_dir) != NULL);
    test_agent_config();
    test_policy();
    test_served();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s_dir);
    return check_result("test_agent_config");
}
