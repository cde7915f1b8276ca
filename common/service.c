/* service.c: see service.h. A thin layer over sd_notify(3) so that no daemon includes systemd's
 * headers. */
#include "service.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

int cnd_service_ready(const char *status)
{
    char msg[512]; /* a long status is cut */
    snprintf(msg, sizeof msg, "READY=1%s%s", status ? "\nSTATUS=" : "", status ? status : "");
    int rc = sd_notify(0, msg);
    if (rc >= 0) return rc > 0 ? 1 : 0;
    const char *sock = getenv("NOTIFY_SOCKET");
    return cnd_errf(CND_EIO, "service manager notification to %s failed: %s",
                    sock ? sock : "(no socket)", strerror(-rc));
}
