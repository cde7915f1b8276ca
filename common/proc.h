/*
 * proc.h: running other `condenser` commands as child processes of this very executable
 * (/proc/self/exe), the way `condenser demo` runs a federation and a fleet on one machine.
 *
 * A child's stdout and stderr are appended to a log file named by the caller, so a failure can
 * point at it. Waiting is always bounded: a child that outlives its deadline is killed and
 * reaped, and the caller gets CND_ETIMEOUT naming it.
 */
#ifndef CND_PROC_H
#define CND_PROC_H

#include "error.h"

#include <sys/types.h>

/* Starts `condenser args...` (args NULL-terminated, at most 62) with output appended to log.
 * Returns the child's pid, or -1 when fork fails (errno set). */
pid_t cnd_proc_spawn_self(const char *log, const char *const *args);

/* Waits at most timeout_s for pid to end; *status receives its exit code (128 + signal when a
 * signal ended it). Returns 0, CND_ETIMEOUT (the child was killed and reaped) or CND_EIO. */
CND_MUST_USE int cnd_proc_wait(pid_t pid, double timeout_s, int *status);

/* Checks without blocking whether pid ended: 1 (and *status as cnd_proc_wait gives it), 0 while
 * it runs, CND_EIO when it is not our child. */
CND_MUST_USE int cnd_proc_try_wait(pid_t pid, int *status);

/* Asks pid to stop (SIGTERM), waits up to grace_s, then kills it (SIGKILL); reaps it either way.
 * Returns its exit status as cnd_proc_wait reports it, or -1 when it could not be reaped. */
int cnd_proc_stop(pid_t pid, double grace_s);

/* Runs `condenser args...` to completion within timeout_s. Returns 0 when it exited 0;
 * CND_EIO naming the command, its exit status and the log otherwise; CND_ETIMEOUT. */
CND_MUST_USE int cnd_proc_run_self(const char *log, const char *const *args, double timeout_s);

#endif
