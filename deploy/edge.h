/*
 * edge.h: what an edge device does with the models a coordinator rolls out to it: the logic of
 * `condenser edge` and of every device the fleet simulator runs, independent of sockets and
 * disks (the caller moves messages; an edge store keeps the bytes, edge_store.h).
 *
 * The device:
 *   - reports its DeviceProfile (labels, hardware and CPU class, RAM and flash budgets, latency
 *     budget, the artifact it runs) whenever it (re)connects;
 *   - on an ArtifactOffer verifies the signed manifest before anything else (trusted federation
 *     key, signature, expiry, a sequence above the highest it ever accepted, version not lower
 *     unless the manifest is a signed rollback, device class, model name, offer fields equal to
 *     the manifest, size within its flash budget) and refuses with a distinct reason otherwise;
 *   - pulls the artifact in chunks (at most 4 requests in flight), each checked against its
 *     SHA-256, written into a partial download reserved at exactly the signed size and recorded
 *     in its state, so a disconnect or a restart resumes from the first missing chunk;
 *   - activates with A/B slots: the whole artifact is checked against the manifest's length and
 *     digest and against the runtime's own validation, written to the inactive slot (atomic,
 *     durable), then the state switches to it with a `pending` flag (atomic rename); the
 *     embedded self-test vectors must match bit for bit and the measured latency must fit the
 *     budget, and only then is `pending` cleared. A failure switches back to the previous slot;
 *     a crash or power cut while `pending` is set is found at the next boot, which switches
 *     back by itself. Killed at any byte, the device ends on the old or the new model;
 *   - on a Rollback (a signed manifest with the rollback flag and a new sequence) returns to
 *     the named artifact, from its other slot when it is there, else by downloading it;
 *   - keeps its highest accepted sequence in the state record, written atomically.
 *
 * Every check that refuses an artifact leaves the running model, its slot and the highest
 * sequence untouched. Reports carry a reason text that starts with the reason's name
 * (cnd_edge_reason_name), e.g. "expired: manifest expired at 1700000000".
 *
 * Threads: one thread per device object. Nothing here prints.
 */
#ifndef CND_EDGE_H
#define CND_EDGE_H

#include "cnd_rt.h"
#include "condenser.pb-c.h"
#include "edge_store.h"
#include "error.h"

#include <stddef.h>
#include <stdint.h>

/* Why an artifact was refused or failed. */
typedef enum {
    CND_EDGE_OK = 0,
    CND_EDGE_UNSIGNED,      /* no signed manifest, or not a signed manifest at all */
    CND_EDGE_UNTRUSTED_KEY, /* signed by a key the device does not trust */
    CND_EDGE_BAD_SIGNATURE, /* trusted key, but the manifest bytes were changed */
    CND_EDGE_EXPIRED,       /* manifest past its expiry */
    CND_EDGE_OLDER,         /* sequence not above the highest accepted (replay) */
    CND_EDGE_DOWNGRADE,     /* lower version without the rollback flag */
    CND_EDGE_WRONG_CLASS,   /* device class not among the manifest's targets */
    CND_EDGE_WRONG_MODEL,   /* manifest names another model than the one this device runs */
    CND_EDGE_OVERSIZED,     /* more bytes than signed, or more than the flash budget */
    CND_EDGE_TRUNCATED,     /* fewer bytes than signed */
    CND_EDGE_MODIFIED,      /* artifact bytes differ from the signed digest */
    CND_EDGE_MISMATCH,      /* offer fields (digest, size, rollback) disagree with the manifest */
    CND_EDGE_INVALID,       /* the runtime refuses the artifact (format) */
    CND_EDGE_RAM,           /* arena + artifact exceed the RAM budget */
    CND_EDGE_SELFTEST,      /* embedded self-test vectors gave other bits */
    CND_EDGE_LATENCY,       /* measured latency over the budget */
    CND_EDGE_INTERRUPTED,   /* restarted while the new model was on trial */
    CND_EDGE_STORAGE,       /* the store failed (disk full, I/O error) */
} cnd_edge_reason_t;

const char *cnd_edge_reason_name(cnd_edge_reason_t r);

/* Faults a simulated device can be made to have (fleet simulator and tests only). */
typedef enum {
    CND_EDGE_FAULT_NONE = 0,
    CND_EDGE_FAULT_SELFTEST, /* computes wrong bits for any new (non-rollback) artifact */
    CND_EDGE_FAULT_HANG,     /* ignores offers of new artifacts: never answers */
    CND_EDGE_FAULT_CRASH,    /* loses power during the trial of a new artifact, once */
} cnd_edge_fault_t;

typedef struct {
    const char *key, *value;
} cnd_edge_label_t;

typedef struct {
    const char *name;           /* node name (the envelope sender; not used here) */
    const char *hardware_class; /* device class matched against manifest targets (required) */
    const char *cpu_class;      /* may be "" */
    const char *model;          /* manifest name this device accepts; "" = any */
    uint64_t ram_bytes;         /* RAM the model may use: arena + artifact bytes */
    uint64_t flash_bytes;       /* storage for two slots */
    uint32_t latency_budget_us; /* 0 = none */
    const cnd_edge_label_t *labels;
    size_t n_labels;            /* <= 32 */
    const uint8_t (*trust)[32]; /* trusted federation (manifest signing) keys */
    size_t n_trust;             /* >= 1 */
    int latency_runs;           /* inferences timed at activation; 0 = 5 */
    int keep_model;             /* 1: keep the active model loaded (serving inference) */
    cnd_edge_fault_t fault;
    uint32_t max_inflight;    /* chunk requests in flight; 0 = 4 */
    double request_timeout_s; /* re-request a chunk after this; 0 = 5 */
} cnd_edge_cfg_t;

/* Sends one message to the coordinator (the caller wraps it in an envelope). Returns 0 or an
 * error; a failed send is retried by the device's own timers (chunk requests) or on the next
 * connection (reports). */
typedef int (*cnd_edge_send_fn)(void *ctx, Condenser__MsgType type, void *payload);

typedef struct cnd_edge cnd_edge_t;

/* Fetches exactly len bytes at offset off of the object at url (an HTTP range request:
 * edge_http.h). Returns 0 with out filled, or an error with the detail set; the device then
 * stops using the cache for that download and asks for chunks over its control channel. */
typedef int (*cnd_edge_fetch_fn)(void *ctx, const char *url, uint64_t off, uint32_t len,
                                 uint8_t *out);

/* Creates a device over `store` (borrowed; must outlive it). The configuration is copied.
 * Call cnd_edge_boot next. Returns 0, CND_EINVAL or CND_ENOMEM. */
CND_MUST_USE int cnd_edge_new(cnd_edge_t **out, const cnd_edge_cfg_t *cfg,
                              const cnd_edge_store_t *store, cnd_edge_send_fn send, void *send_ctx);
void cnd_edge_destroy(cnd_edge_t **e);

/* Loads the state. A `pending` flag left by a crash during a trial switches back to the
 * previous slot (reported at the next connection as FAILED, reason "interrupted"). Then the
 * active slot is checked against its manifest (signature and digest), loaded and self-tested;
 * if it fails, the other slot is tried; if both fail the device runs no model. Returns 0, or
 * CND_EFORMAT / CND_EIO when the state record itself cannot be read. */
CND_MUST_USE int cnd_edge_boot(cnd_edge_t *e);

/* Drops everything held in memory and boots again from the store: what a power cut and a
 * restart do (the simulator's CRASH fault, tests). */
CND_MUST_USE int cnd_edge_reboot(cnd_edge_t *e);

/* Called after each (re)connection: sends the profile, the last activation report (the
 * coordinator may have missed it) and resumes a download in progress. */
void cnd_edge_connected(cnd_edge_t *e, double now);

/* Handles one validated message from the coordinator. Returns 0, or CND_ECANCELED when the
 * simulated CRASH fault cut the power (the caller then calls cnd_edge_reboot and
 * cnd_edge_connected). Bad offers and chunks are answered or ignored, never returned as
 * errors. */
int cnd_edge_on_message(cnd_edge_t *e, const Condenser__Envelope *env, double now);

/* Re-requests chunks whose answer is overdue. */
void cnd_edge_tick(cnd_edge_t *e, double now);

/* Installs an artifact from local files (a technician's USB stick, a factory image) through
 * exactly the checks and activation steps of an offer. manifest may be NULL (refused as
 * unsigned). Returns 0 when the new model is active and healthy; otherwise a CND_E* code with
 * *why (may be NULL) set and the detail naming the reason. */
CND_MUST_USE int cnd_edge_install(cnd_edge_t *e, const uint8_t *art, size_t len,
                                  const uint8_t *manifest, size_t manifest_len,
                                  cnd_edge_reason_t *why);

typedef struct {
    int has_model;        /* a verified, self-tested model is active */
    int slot;             /* 0 = A, 1 = B, -1 none */
    uint8_t digest[32];   /* active artifact */
    char model[129];      /* its manifest name */
    uint64_t version;     /* its manifest version */
    uint64_t sequence;    /* its manifest sequence */
    uint64_t highest_seq; /* highest sequence ever accepted */
    uint32_t latency_us;  /* measured median latency of the active model */
    int downloading;      /* a download is in progress */
    uint32_t chunks_held, chunks_total;
    uint64_t refused;              /* offers and rollbacks refused since start */
    cnd_edge_reason_t last_reason; /* of the last refusal or failure */
    int last_state;                /* Condenser__ActivationState of the last report, 0 if none */
    uint64_t last_rollout;         /* rollout id of the last report */
    uint64_t cache_chunks;         /* chunks fetched from artifact caches since start */
    uint64_t cache_failures;       /* downloads that fell back to chunk requests since start */
    char cache_error[200];         /* why the last one did */
} cnd_edge_status_t;

void cnd_edge_status(const cnd_edge_t *e, cnd_edge_status_t *st);

/* Lets offers that name an artifact cache (ArtifactOffer.artifact_url) be downloaded from it
 * with fetch (NULL: chunk requests only, as devices without HTTP do). Bytes from the cache are
 * checked against the signed manifest like chunks; a cache that fails or serves other bytes
 * makes the device fetch that artifact over the control channel instead. */
void cnd_edge_set_fetch(cnd_edge_t *e, cnd_edge_fetch_fn fetch, void *ctx);

/* Sets the simulated fault from now on (the simulator provisions devices first, then arms it). */
void cnd_edge_set_fault(cnd_edge_t *e, cnd_edge_fault_t f);

/* The active model for inference (NULL when none, or keep_model is 0). */
cnd_rt_model_t *cnd_edge_model(cnd_edge_t *e);

/* --- coordinator endpoints ---------------------------------------------------------------
 * A device may name several coordinator endpoints (`endpoint = EP, EP, ...` in edge.conf,
 * `fleet-sim --endpoint EP,EP`): the replicas of `rollout serve` that share one rollout state.
 * Each device starts at the one its name hashes to (FNV-1a of the name, modulo the count: the
 * same device always starts at the same endpoint, and devices spread evenly), and moves on to the
 * next in list order, wrapping around, when it has had no session for its failover time. */
#define CND_EDGE_ENDPOINTS_MAX 8
#define CND_EDGE_ENDPOINT_LEN  255
typedef struct {
    char ep[CND_EDGE_ENDPOINTS_MAX][CND_EDGE_ENDPOINT_LEN + 1]; /* in this device's order */
    size_t n;
} cnd_edge_endpoints_t;
/* Where in a list of n endpoints `device` starts (FNV-1a of its name modulo n; n >= 1). */
size_t cnd_edge_endpoint_first(const char *device, size_t n);
/* Parses a comma-separated list (spaces around entries ignored) and orders it for `device`.
 * Returns 0, or CND_EINVAL naming the empty, overlong or surplus entry. */
CND_MUST_USE int cnd_edge_endpoints_parse(cnd_edge_endpoints_t *out, const char *list,
                                          const char *device);

#endif
