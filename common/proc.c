/*
 * proc.c: child processes of this executable (see proc.h). Polling waitpid(WNOHANG) every 20 ms
 * rather than blocking keeps every wait bounded without signals or threads.
 */
#include "proc.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

pid_t cnd_proc_spawn_self(const char *log, const char *const *args)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char *argv[64];
        int n = 0;
        argv[n++] = "condenser";
        for (int i = 0; args[i] && n < 63; i++) argv[n++] = (char *)args[i];
        argv[n] = NULL;
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    return pid;
}

int cnd_proc_try_wait(pid_t pid, int *status)
{
    int st;
    pid_t r = pid > 0 ? waitpid(pid, &st, WNOHANG) : -1;
    if (r == pid) {
        *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return 1;
    }
    if (r < 0) return cnd_errf(CND_EIO, "waitpid %d: %s", (int)pid, strerror(errno));
    return 0;
}

static void s_nap(void)
{
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
}

int cnd_proc_wait(pid_t pid, double timeout_s, int *status)
{
    double end = cnd_now() + timeout_s;
    for (;;) {
        int r = cnd_proc_try_wait(pid, status);
        if (r) return r < 0 ? r : 0;
        if (cnd_now() > end) {
            int st;
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return cnd_errf(CND_ETIMEOUT, "process %d did not finish in %.0f s", (int)pid,
                            timeout_s);
        }
        s_nap();
    }
}

int cnd_proc_stop(pid_t pid, double grace_s)
{
    int st = -1;
    if (pid <= 0) return -1;
    kill(pid, SIGTERM);
    double end = cnd_now() + grace_s;
    for (;;) {
        int r = cnd_proc_try_wait(pid, &st);
        if (r) return r < 0 ? -1 : st;
        if (cnd_now() > end) break;
        s_nap();
    }
    kill(pid, SIGKILL);
    int raw;
    if (waitpid(pid, &raw, 0) != pid) return -1;
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
}

int cnd_proc_run_self(const char *log, const char *const *args, double timeout_s)
{
    pid_t pid = cnd_proc_spawn_self(log, args);
    if (pid < 0) return cnd_errf(CND_EIO, "fork: %s", strerror(errno));
    int st = 0;
    int rc = cnd_proc_wait(pid, timeout_s, &st);
    if (rc) return rc;
    if (st != 0)
        return cnd_errf(CND_EIO, "condenser %s %s failed (exit %d): see %s", args[0],
                        args[1] ? args[1] : "", st, log);
    return 0;
}
