/*
 * error.c: error code names and the per-thread detail message (see error.h).
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char s_detail[1024];

const char *cnd_strerror(int code)
{
    switch (code) {
    case CND_OK: return "success";
    case CND_ENOMEM: return "out of memory";
    case CND_EINVAL: return "invalid argument or input";
    case CND_EIO: return "input/output error";
    case CND_EPROTO: return "protocol error";
    case CND_ECRYPTO: return "cryptographic check failed";
    case CND_EDB: return "database error";
    case CND_ETIMEOUT: return "timed out";
    case CND_EFORMAT: return "bad file format";
    case CND_ECORRUPT: return "content corrupted (digest mismatch)";
    case CND_ERANGE: return "value out of range";
    case CND_ESTATE: return "not allowed in the current state";
    case CND_ENOTFOUND: return "not found";
    case CND_EEXIST: return "already exists";
    case CND_EPERM: return "not permitted";
    case CND_ECANCELED: return "cancelled";
    default: return "unknown error";
    }
}

int cnd_errf(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_detail, sizeof s_detail, fmt, ap);
    va_end(ap);
    return code;
}

int cnd_err_wrap(int code, const char *fmt, ...)
{
    char prefix[512], old[sizeof s_detail];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, s_detail, sizeof old);
    if (old[0])
        snprintf(s_detail, sizeof s_detail, "%.500s: %.500s", prefix, old);
    else
        snprintf(s_detail, sizeof s_detail, "%.500s: %s", prefix, cnd_strerror(code));
    return code;
}

const char *cnd_err_detail(void)
{
    return s_detail;
}

void cnd_err_clear(void)
{
    s_detail[0] = '\0';
}
