/*
 * error.h: the one set of error codes every Condenser module returns.
 *
 * Functions return 0 on success or a negative CND_E* code. A code says what kind of failure it
 * was; the sentence a user needs (which file, which byte, which field, which peer) is kept in a
 * thread-local detail buffer set by cnd_errf() at the place the failure is found. main() prints
 * cnd_err_detail() when a subcommand fails. Library code never prints and never exits.
 */
#ifndef CND_ERROR_H
#define CND_ERROR_H

#include <stddef.h>

#define CND_OK        0
#define CND_ENOMEM    (-1)  /* allocation failed */
#define CND_EINVAL    (-2)  /* bad argument or malformed input */
#define CND_EIO       (-3)  /* read/write/open failed */
#define CND_EPROTO    (-4)  /* protocol violation by a peer */
#define CND_ECRYPTO   (-5)  /* signature, MAC, key or certificate check failed */
#define CND_EDB       (-6)  /* SQLite error */
#define CND_ETIMEOUT  (-7)  /* deadline passed */
#define CND_EFORMAT   (-8)  /* file has a wrong magic, version or layout */
#define CND_ECORRUPT  (-9)  /* digest mismatch: content changed */
#define CND_ERANGE    (-10) /* value out of the representable range */
#define CND_ESTATE    (-11) /* operation not allowed in the current state */
#define CND_ENOTFOUND (-12) /* named object does not exist */
#define CND_EEXIST    (-13) /* object already exists */
#define CND_EPERM     (-14) /* permission or policy refusal */
#define CND_ECANCELED (-15) /* interrupted or cancelled */

/* Returns a static string naming the code; never NULL. */
const char *cnd_strerror(int code);

/* Records a formatted detail message for the calling thread and returns `code`, so a failure
 * site reads `return cnd_errf(CND_EFORMAT, "%s: bad magic 0x%08x", path, m);`. */
int cnd_errf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last detail recorded on this thread, or "" if none. Valid until the next cnd_errf(). */
const char *cnd_err_detail(void);

/* Clears the detail message. */
void cnd_err_clear(void);

/* Prefixes the current detail with a context string ("loading teacher: ...") and returns code. */
int cnd_err_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CND_MUST_USE __attribute__((warn_unused_result))

#endif
