/*
 * service.h: telling the service manager how a daemon is doing (systemd's Type=notify).
 *
 * A unit with Type=notify is "started" only when the daemon says READY=1 on the socket named by
 * $NOTIFY_SOCKET (sd_notify(3), from Debian's libsystemd). Each daemon calls
 * cnd_service_ready() once it can really serve: the coordinator and `rollout serve` after their
 * CurveZMQ socket is bound and their --metrics listener is up, the agent once its first
 * connection to the coordinator is set up, the edge daemon once its device directory is open.
 * So `systemctl start` returns when a scrape or a connection would succeed, and units ordered
 * After= one another start in a useful order.
 *
 * Outside systemd ($NOTIFY_SOCKET unset) every call does nothing and returns 0.
 */
#ifndef CND_SERVICE_H
#define CND_SERVICE_H

/* Sends READY=1 and STATUS=`status` (may be NULL). Returns 1 when sent, 0 when no service
 * manager listens, CND_EIO with a detail naming the socket when sending failed. */
int cnd_service_ready(const char *status);

#endif
