/* test_log.c: common/log.c: the line format (plain and journal), the scope's job=, round=,
 * peer=, levels taken from the sentence and the threshold, one line whatever the sentence holds,
 * and the journal detection by JOURNAL_STREAM. */
#include "check.h"
#include "error.h"
#include "log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_format(void)
{
    char line[256];
    cnd_log_scope(0, 0, NULL);
    /* 2026-01-02T03:04:05Z */
    cnd_log_format(line, sizeof line, 0, 1767323045, "coordinator", "listening on tcp://x");
    CHECK(strcmp(line, "2026-01-02T03:04:05Z info coordinator: listening on tcp://x\n") == 0);
    cnd_log_scope(7, 3, "site-a");
    cnd_log_format(line, sizeof line, 0, 1767323045, "coordinator", "warning: slow");
    CHECK(strcmp(line, "2026-01-02T03:04:05Z warn coordinator job=7 round=3 peer=site-a: "
                       "warning: slow\n") == 0);
    cnd_log_format(line, sizeof line, 1, 1767323045, "coordinator", "warning: slow");
    CHECK(strcmp(line, "<4>coordinator job=7 round=3 peer=site-a: warning: slow\n") == 0);
    cnd_log_format(line, sizeof line, 1, 0, "agent a", "error: gave up");
    CHECK(strncmp(line, "<3>agent a job=7", 16) == 0);
    cnd_log_format(line, sizeof line, 1, 0, "agent a", "debug: frame");
    CHECK(strncmp(line, "<7>", 3) == 0);
    cnd_log_scope(7, 0, "two words\nx=y");
    cnd_log_format(line, sizeof line, 1, 0, "c", "a\nb\tc");
    CHECK(strcmp(line, "<6>c job=7 peer=two_words_x_y: a b c\n") == 0);
    /* A sentence longer than the buffer is cut, still one line ending in a newline. */
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    size_t n = cnd_log_format(line, sizeof line, 1, 0, "c", big);
    CHECK(n == sizeof line - 1 && line[n - 1] == '\n' && strchr(line, '\n') == line + n - 1);
    cnd_log_scope(0, 0, NULL);
}

static void test_levels(void)
{
    cnd_log_level_t lv;
    CHECK(cnd_log_level_parse(&lv, "debug") == 0 && lv == CND_LOG_DEBUG);
    CHECK(cnd_log_level_parse(&lv, "warning") == 0 && lv == CND_LOG_WARN);
    CHECK(cnd_log_level_parse(&lv, "warn") == 0 && lv == CND_LOG_WARN);
    CHECK(cnd_log_level_parse(&lv, "error") == 0 && lv == CND_LOG_ERROR);
    CHECK(cnd_log_level_parse(&lv, "verbose") == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "'verbose'") != NULL);
    CHECK(cnd_log_level_of("warning: x") == CND_LOG_WARN);
    CHECK(cnd_log_level_of("a warning: x") == CND_LOG_INFO);

    /* Filtering through cnd_log_emit, with stderr sent to a file. */
    char path[] = "/tmp/cnd_test_log.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    unsetenv("JOURNAL_STREAM");
    cnd_log_set_level(CND_LOG_WARN);
    cnd_log_emit("t", "info line");
    cnd_log_emit("t", "warning: warn line");
    cnd_log_emit("t", "error: error line");
    cnd_log_emit("t", "debug: debug line");
    cnd_log_set_level(CND_LOG_DEBUG);
    cnd_log_emit("t", "debug: shown debug");
    cnd_log_set_level(CND_LOG_ERROR);
    cnd_log_emit("t", "warning: hidden warn");
    cnd_log_set_level(CND_LOG_INFO);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[1024] = "";
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[got] = 0;
    if (f) fclose(f);
    CHECK(!strstr(buf, "info line") && !strstr(buf, "debug line") && !strstr(buf, "hidden"));
    CHECK(strstr(buf, " warn t: warning: warn line\n") &&
          strstr(buf, " error t: error: error line\n"));
    CHECK(strstr(buf, " debug t: debug: shown debug\n"));
    int lines = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n';
    CHECK_EQ_INT(lines, 3);
    close(fd);
    unlink(path);
}

static void test_journal_detection(void)
{
    char path[] = "/tmp/cnd_test_log.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    char js[64];
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    CHECK(cnd_log_stderr_is_journal() == 1);
    /* Inherited by a process whose stderr went elsewhere: not the journal. */
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino + 1);
    setenv("JOURNAL_STREAM", js, 1);
    CHECK(cnd_log_stderr_is_journal() == 0);
    setenv("JOURNAL_STREAM", "garbage", 1);
    CHECK(cnd_log_stderr_is_journal() == 0);
    unsetenv("JOURNAL_STREAM");
    CHECK(cnd_log_stderr_is_journal() == 0);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    unlink(path);
}

int main(void)
{
    test_format();
    test_levels();
    test_journal_detection();
    return check_result("test_log");
}
