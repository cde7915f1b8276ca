/*
 * transport.h: the encrypted, authenticated message transport between the coordinator and its
 * nodes, over libzmq with CurveZMQ (RFC 26) and a ZAP handler (RFC 27).
 *
 * Coordinator side, cnd_server_t: one ROUTER socket with CURVE server security. Its own ZeroMQ
 * context holds a ZAP handler thread (REP on inproc://zeromq.zap.01, bound before the ROUTER
 * binds, alive until after it closes) that admits a client only when the caller's allow()
 * callback accepts its CURVE public key, and names it with the user id allow() returns. Every
 * received frame is therefore attributed to an authenticated key: cnd_server_recv() returns the
 * ZAP user id ("User-Id" metadata) and the client's public key ("X-Curve-Key" metadata, set by
 * our ZAP handler). Limits: ZMQ_MAXMSGSIZE (a larger frame makes libzmq drop that connection;
 * the others are unaffected), send and receive high-water marks, ZMQ_ROUTER_MANDATORY (a send
 * to a peer that is gone fails instead of vanishing), ZMTP heartbeats and a handshake deadline.
 * Frame limit: max_msg bytes of application data; ZMQ_MAXMSGSIZE is set CND_CURVE_FRAME_OVERHEAD
 * above it because libzmq counts the encrypted CURVE MESSAGE command, not the plaintext.
 * Liveness: cnd_server_probe() sends an empty frame (clients drop empty frames before the
 * application sees them) and so tells an open connection from one libzmq has closed (peer
 * process killed: at once; peer host gone: after the ZMTP heartbeat timeout).
 * With `recheck` set, allow() is asked again for every received message, so a key revoked while
 * its connection is up is cut off at its next message, not only at its next connection.
 *
 * Node side, cnd_client_t: one DEALER socket with CURVE client keys and the coordinator's public
 * key pinned (a server without the matching secret key cannot complete the handshake). It
 * reconnects by itself with back-off, sends only over a completed (authenticated) session
 * (ZMQ_IMMEDIATE), and watches its own socket events so that a refused key is reported as such
 * (CND_EPERM) instead of as a silent timeout. libzmq gives up on a connection whose handshake
 * the server refused; the client dials again every reconnect_ivl_max_ms (during its own send,
 * recv and state calls), so a node enrolled after it started gets in without a restart.
 *
 * Every send and receive takes a timeout in milliseconds (>= 0); nothing waits without bound.
 * Nothing listens unencrypted: a server cannot be created without a secret key, and the CURVE
 * options are set before bind/connect.
 *
 * Keys: a node's identity is an Ed25519 key pair; its CurveZMQ key pair is the X25519 form of
 * it (cnd_transport_curve_keys). Keys are raw bytes here: 32-byte public, 32-byte CURVE secret,
 * 64-byte Ed25519 secret (libsodium layout).
 *
 * Threads: a server or client object is used by one thread at a time (ZeroMQ sockets are not
 * thread-safe). allow() and on_event() are called from the ZAP thread as well as from the thread
 * that calls cnd_server_recv(), so they must be thread-safe (e.g. their own SQLite connection).
 */
#ifndef CND_TRANSPORT_H
#define CND_TRANSPORT_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_CURVE_KEY_BYTES  32
#define CND_ED25519_SK_BYTES 64
#define CND_USER_ID_MAX      64 /* user id buffer, NUL included */
#define CND_ROUTING_ID_MAX   255
/* What CurveZMQ adds to each frame on the wire ("\x07MESSAGE", 8-byte nonce, 16-byte MAC, flags
 * byte), all of which libzmq's ZMQ_MAXMSGSIZE counts. */
#define CND_CURVE_FRAME_OVERHEAD 33

/* Ed25519 identity -> CurveZMQ keys. Returns 0 or CND_ECRYPTO (not a valid Ed25519 key). */
int cnd_transport_curve_keys(uint8_t curve_pk[CND_CURVE_KEY_BYTES],
                             uint8_t curve_sk[CND_CURVE_KEY_BYTES],
                             const uint8_t ed_pk[CND_CURVE_KEY_BYTES],
                             const uint8_t ed_sk[CND_ED25519_SK_BYTES]) CND_MUST_USE;
/* Only the public half, e.g. to enroll a node's CURVE key from its certificate's Ed25519 key. */
int cnd_transport_curve_public(uint8_t curve_pk[CND_CURVE_KEY_BYTES],
                               const uint8_t ed_pk[CND_CURVE_KEY_BYTES]) CND_MUST_USE;
/* The CURVE public key belonging to a CURVE secret key. */
void cnd_transport_curve_public_from_secret(uint8_t curve_pk[CND_CURVE_KEY_BYTES],
                                            const uint8_t curve_sk[CND_CURVE_KEY_BYTES]);

/* Admission callback. Returns > 0 to admit `pub` and writes its user id (1..63 bytes of
 * [A-Za-z0-9._-], NUL-terminated) to user_id; 0 to refuse; < 0 on an internal failure (the
 * client is refused with ZAP status 500 and may retry). */
typedef int (*cnd_zap_allow_fn)(void *ctx, const uint8_t pub[CND_CURVE_KEY_BYTES],
                                char user_id[CND_USER_ID_MAX]);

typedef enum {
    CND_TEV_ADMITTED = 1,     /* ZAP admitted a key (pub, address, user_id set) */
    CND_TEV_REFUSED,          /* ZAP refused a key, or the request was malformed (pub may be 0) */
    CND_TEV_REVOKED_DROP,     /* recheck: message from a key no longer allowed was dropped */
    CND_TEV_MALFORMED_DROP,   /* a frame without a single data part, or without metadata */
    CND_TEV_HANDSHAKE_FAILED, /* handshake failed before ZAP (wrong server key, protocol) */
    CND_TEV_DISCONNECTED,     /* a connection closed (incl. oversized frame, heartbeat loss) */
} cnd_transport_event_kind_t;

typedef struct {
    cnd_transport_event_kind_t kind;
    uint8_t pub[CND_CURVE_KEY_BYTES]; /* client key, all zero when unknown */
    const char *address;              /* peer address as libzmq reports it, or "" */
    const char *user_id;              /* ZAP user id, or "" */
    const char *reason;               /* short text for logs, never NULL */
} cnd_transport_event_t;

typedef void (*cnd_transport_event_fn)(void *ctx, const cnd_transport_event_t *ev);

/* heartbeat_ivl_ms for a socket of many thousands of connections: no ZMTP heartbeats at all, and
 * TCP keepalive (idle 60 s, then 6 probes 10 s apart) finds a dead peer instead; the application's
 * own heartbeats say whether a peer is alive. libzmq 4.3.4 cancels an I/O-thread timer by walking
 * all of them, and a PING arms one (the PONG timeout, later than every other timer) that the
 * peer's next message cancels: with 16,700 connections per I/O thread, the tenth minute of a
 * 100,000-device rollout spent 94% of each server's I/O thread in that walk and stalled
 * (docs/benchmarks.md). */
#define CND_HEARTBEAT_OFF (-1)

typedef struct {
    const char *endpoint;      /* tcp://HOST:PORT (PORT may be a wildcard), ipc://PATH */
    const uint8_t *secret_key; /* 32-byte CURVE secret key of the coordinator (required) */
    cnd_zap_allow_fn allow;    /* required */
    void *allow_ctx;
    cnd_transport_event_fn on_event; /* optional: every admission, refusal and drop */
    void *event_ctx;
    int recheck;              /* 1: ask allow() again for every received message */
    int max_msg;              /* bytes per frame; 0 = CND_PROTO_MAX_MSG */
    int hwm;                  /* messages queued per peer each way; 0 = 1000 */
    int sndhwm;               /* messages queued towards each peer; 0 = hwm */
    int heartbeat_ivl_ms;     /* ZMTP PING interval; 0 = 2000; CND_HEARTBEAT_OFF: none */
    int heartbeat_timeout_ms; /* drop a silent peer after; 0 = 3 * heartbeat_ivl_ms (the TTL
                                 the peer is asked to keep, ZMQ_HEARTBEAT_TTL, is capped at
                                 65.5 s, and none is sent with PINGs rarer than that: libzmq 4.3
                                 wraps larger ones, transport.c) */
    int handshake_ivl_ms;     /* handshake deadline; 0 = 5000 */
} cnd_server_opts_t;

typedef struct {
    uint64_t zap_admitted, zap_refused; /* ZAP decisions */
    uint64_t revoked_drops;             /* messages dropped by recheck */
    uint64_t malformed_drops;           /* multipart or metadata-less frames dropped */
    uint64_t handshake_failures;        /* failed before ZAP (monitor) */
    uint64_t disconnects;               /* connections closed (monitor) */
    uint64_t received, sent;            /* frames */
} cnd_server_stats_t;

/* Where a frame came from, to address the reply. */
typedef struct {
    uint8_t id[CND_ROUTING_ID_MAX]; /* ROUTER routing id of the connection */
    size_t id_len;
} cnd_peer_t;

/* One received frame. data is owned (free with cnd_frame_clear). */
typedef struct {
    cnd_peer_t peer;                        /* reply address */
    char user_id[CND_USER_ID_MAX];          /* ZAP user id of the sender */
    char address[64];                       /* peer IP address ("Peer-Address"), or "" */
    uint8_t curve_key[CND_CURVE_KEY_BYTES]; /* sender's authenticated CURVE public key */
    uint8_t *data;                          /* frame bytes, len <= max_msg */
    size_t len;
} cnd_frame_t;

void cnd_frame_clear(cnd_frame_t *f);

typedef struct cnd_server cnd_server_t;

/* Creates the context, the ZAP thread and the bound ROUTER. Returns 0, CND_EINVAL (missing key
 * or callback, bad option), CND_ECRYPTO (libzmq built without CURVE), CND_EIO (bind failed:
 * detail names the endpoint and errno text) or CND_ENOMEM. */
int cnd_server_new(cnd_server_t **out, const cnd_server_opts_t *opts) CND_MUST_USE;

/* The bound endpoint with any wildcard port resolved, e.g. "tcp://127.0.0.1:40123". */
const char *cnd_server_endpoint(const cnd_server_t *s);

/* Waits up to timeout_ms for one frame from an authenticated client. Returns 0 with *f filled,
 * CND_ETIMEOUT, or CND_EIO. Dropped frames (malformed, revoked) are counted and reported to
 * on_event, never returned. */
int cnd_server_recv(cnd_server_t *s, cnd_frame_t *f, int timeout_ms) CND_MUST_USE;

/* Sends one frame to a peer. Returns 0, CND_ENOTFOUND (no such connection: it closed),
 * CND_ETIMEOUT (its queue stayed full for timeout_ms; 0 = do not wait), CND_ERANGE (len over
 * max_msg) or CND_EIO. */
int cnd_server_send(cnd_server_t *s, const cnd_peer_t *to, const void *data, size_t len,
                    int timeout_ms) CND_MUST_USE;

/* Whether a connection is still open, without waiting: sends it an empty frame (which clients
 * drop). Returns 0 (open), CND_ENOTFOUND (closed), CND_ETIMEOUT (open, its queue is full) or
 * CND_EIO. */
int cnd_server_probe(cnd_server_t *s, const cnd_peer_t *to) CND_MUST_USE;

void cnd_server_stats(cnd_server_t *s, cnd_server_stats_t *out);

/* The ROUTER socket, only for zmq_poll() in a caller's event loop (use recv/send for I/O). */
void *cnd_server_socket(cnd_server_t *s);

/* Closes the socket, stops the ZAP thread, ends the context. Accepts NULL; nulls *s. */
void cnd_server_destroy(cnd_server_t **s);

typedef struct {
    const char *endpoint;      /* coordinator endpoint */
    const uint8_t *server_key; /* pinned 32-byte CURVE public key of the coordinator */
    const uint8_t *public_key; /* this node's 32-byte CURVE public key */
    const uint8_t *secret_key; /* this node's 32-byte CURVE secret key */
    int max_msg;               /* 0 = CND_PROTO_MAX_MSG */
    int hwm;                   /* 0 = 1000 */
    int heartbeat_ivl_ms;      /* 0 = 2000; CND_HEARTBEAT_OFF: none */
    int heartbeat_timeout_ms;  /* 0 = 3 * heartbeat_ivl_ms (TTL capped as the server's) */
    int heartbeat_no_ttl;      /* 1: PINGs ask the server for no TTL (ZMQ_HEARTBEAT_TTL 0), so
                                  its libzmq arms no timer per PING (CND_HEARTBEAT_OFF says why);
                                  this client's own PONG timeout still finds a dead server. For
                                  the devices of large fleets (`edge run`) */
    int handshake_ivl_ms;      /* 0 = 5000 */
    int reconnect_ivl_ms;      /* first reconnect delay; 0 = 100 */
    int reconnect_ivl_max_ms;  /* back-off cap, and the re-dial interval after the server refused
                                  this key; 0 = 5000 */
    void *zmq_context;         /* optional context shared by many clients (a fleet
                                  simulator); NULL = the client makes and ends its own */
    int no_monitor;            /* 1: no socket monitor (saves two sockets per client); a
                                  refused key then shows as CND_ETIMEOUT, not CND_EPERM, and
                                  is not re-dialled (recreate the client instead) */
} cnd_client_opts_t;

typedef struct {
    int connected;               /* a CURVE session is up (handshake and ZAP passed) */
    uint64_t tcp_connects;       /* TCP connections made (before any handshake) */
    uint64_t handshakes;         /* sessions established so far */
    uint64_t auth_refusals;      /* handshakes the server refused (ZAP status in last_status) */
    uint64_t handshake_failures; /* handshakes that failed otherwise: the server's key is not the
                                    pinned one, it is not a CurveZMQ server, or it timed out */
    uint64_t disconnects;
    int last_status; /* last ZAP refusal status (400, 500, ...) or 0 */
} cnd_client_state_t;

typedef struct cnd_client cnd_client_t;

/* Creates the DEALER and starts connecting (returns before the handshake completes). Returns 0,
 * CND_EINVAL, CND_ECRYPTO (no CURVE in libzmq), CND_EIO or CND_ENOMEM. */
int cnd_client_new(cnd_client_t **out, const cnd_client_opts_t *opts) CND_MUST_USE;

/* Sends one frame over an authenticated session. Returns 0, CND_ETIMEOUT (no session or queue
 * full for timeout_ms), CND_EPERM (no session and the coordinator has refused this key),
 * CND_ERANGE (len over max_msg) or CND_EIO. */
int cnd_client_send(cnd_client_t *c, const void *data, size_t len, int timeout_ms) CND_MUST_USE;

/* Receives one frame (owned *data, free()). Returns 0, CND_ETIMEOUT, CND_EPERM (nothing arrived
 * and the coordinator refused this key), or CND_EIO. Multipart frames and empty frames (the
 * server's liveness probes) are dropped. */
int cnd_client_recv(cnd_client_t *c, uint8_t **data, size_t *len, int timeout_ms) CND_MUST_USE;

/* Drains pending socket events and reports the connection state. */
void cnd_client_state(cnd_client_t *c, cnd_client_state_t *out);

void *cnd_client_socket(cnd_client_t *c);
void cnd_client_destroy(cnd_client_t **c);

#endif
