/* service.c: see service.h. A thin layer over sd_notify(3) so that no daemon includes systemd's
 * headers and each message is formed in one place. */
#include "service.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

static int s_notify(const char *what, const char *status)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg, "%s%s%s", what ? what : "",
                     status && what ? "\nSTATUS="
                     : status       ? "STATUS="
                                    : "",
                     status ? status : "");
    if (n < 0 || (size_t)n >= sizeof msg) n = (int)sizeof msg - 1; /* a long status is cut */
    int rc = sd_notify(0, msg);
    if (rc >= 0) return rc > 0 ? 1 : 0;
    const char *sock = getenv("NOTIFY_SOCKET");
    return cnd_errf(CND_EIO, "service manager notification to %s failed: %s",
                    sock ? sock : "(no socket)", strerror(-rc));
}

int cnd_service_ready(const char *status)
{
    return s_notify("READY=1", status);
}

int cnd_service_status(const char *status)
{
    return s_notify(NULL, status ? status : "");
}

int cnd_service_stopping(void)
{
    return s_notify("STOPPING=1", NULL);
}
