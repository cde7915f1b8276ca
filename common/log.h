/*
 * log.h: the daemons' log lines: one line per event, a level, and the job, round and peer it
 * concerns, written to stderr in the form the reader of stderr wants.
 *
 * The daemons (coordinator/coord_daemon.c, agent/agent_daemon.c, rollout/rollout_serve.c) hand
 * finished sentences to a callback, as before; each sets the scope of what it is doing
 * (cnd_log_scope: job, round, peer) just before, on its own thread. The commands that run them
 * pass cnd_log_emit as that callback, which
 *   - takes the level from the sentence: "error: ..." is an error, "warning: ..." a warning,
 *     "debug: ..." debug, anything else info;
 *   - drops it when below the level chosen (--log-level or the config key log_level; default
 *     info);
 *   - writes, when stderr is the journal (systemd sets JOURNAL_STREAM to stderr's
 *     device:inode), "<P>COMPONENT job=J round=R peer=P: SENTENCE" with P the syslog priority
 *     sd-daemon(3) reads (3 error, 4 warning, 6 info, 7 debug), and no time (the journal keeps
 *     its own); otherwise "TIME LEVEL COMPONENT job=J round=R peer=P: SENTENCE" with TIME in
 *     UTC, ISO 8601. job=, round= and peer= appear only where known. Control characters in a
 *     sentence become spaces, so one event is always one line.
 */
#ifndef CND_LOG_H
#define CND_LOG_H

#include <stddef.h>
#include <stdint.h>

/* Values are syslog priorities (sd-daemon's <N> prefixes). */
typedef enum {
    CND_LOG_ERROR = 3,
    CND_LOG_WARN = 4,
    CND_LOG_INFO = 6,
    CND_LOG_DEBUG = 7,
} cnd_log_level_t;

/* "error", "warn" (or "warning"), "info", "debug" -> level. Returns 0 or CND_EINVAL naming
 * the value and the choices. */
int cnd_log_level_parse(cnd_log_level_t *out, const char *text);
const char *cnd_log_level_name(cnd_log_level_t level);

/* The process-wide threshold (default CND_LOG_INFO). */
void cnd_log_set_level(cnd_log_level_t level);
cnd_log_level_t cnd_log_get_level(void);

/* What the calling thread's next lines concern: job 0, round 0 and peer NULL mean unknown. The
 * peer string is copied. */
void cnd_log_scope(int64_t job, uint32_t round, const char *peer);

/* The level a sentence carries by its prefix (above). */
cnd_log_level_t cnd_log_level_of(const char *sentence);

/* Formats one line (with its newline) into out: journal = 1 for the <P> form, else the plain
 * form at Unix time `t`. Uses the calling thread's scope. Returns the length (cut to cap-1). */
size_t cnd_log_format(char *out, size_t cap, int journal, int64_t t, const char *component,
                      const char *sentence);

/* Whether stderr is the journal: JOURNAL_STREAM names stderr's device and inode. */
int cnd_log_stderr_is_journal(void);

/* The callback the daemons get: ctx is the component name ("coordinator", "agent site-a",
 * "rollout-serve"). Filters by level, formats, writes the line to stderr at once. */
void cnd_log_emit(void *ctx, const char *sentence);

#endif
