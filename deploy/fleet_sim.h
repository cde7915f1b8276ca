/*
 * fleet_sim.h: many edge devices in one process, for load and chaos tests of rollouts
 * (`condenser fleet-sim`).
 *
 * Each simulated device is a real device as far as the coordinator can tell: its own Ed25519
 * identity (derived from the seed and its index, so runs are reproducible and the coordinator
 * can enroll the keys beforehand), its own CurveZMQ DEALER connection with its own handshake,
 * the real edge logic (edge.h: every manifest check, chunk digest, A/B activation, self-test
 * run by the integer runtime), and its own state. What is shared, to keep thousands of devices
 * in one process: one ZeroMQ context without per-socket monitors, one epoll loop on the sockets'
 * ZMQ_FD, and the in-memory store's pool, where identical verified blobs are kept once
 * (edge_store.h). Each device still receives, hashes and verifies every byte itself.
 *
 * Faults: a fraction of devices (chosen with the seed) gets a fault: SELFTEST (computes wrong
 * bits, so its activation fails and it falls back), HANG (never answers an offer: the
 * coordinator's timeout must catch it) or CRASH (loses power during the trial, reboots, falls
 * back at boot and reports). "mixed" cycles through the three.
 *
 * Threads: one. File descriptors: two per device (socket and its mailbox); the process raises
 * its limit to the hard maximum, refuses a shard that cannot fit, retries a dial that finds no
 * descriptor free later (fleet_sim.c), and larger fleets are split over processes (--shard).
 */
#ifndef CND_FLEET_SIM_H
#define CND_FLEET_SIM_H

#include "edge.h"
#include "error.h"

#include <signal.h>
#include <stdint.h>

typedef struct {
    const char *endpoint;       /* coordinator endpoint, or a comma-separated list of replicas
                                   (edge.h: each device starts at the one its name hashes to) */
    double failover_s;          /* with a list: seconds of failing sends (no session), with no
                                   frame arriving, before a device dials the next endpoint
                                   (default 5) */
    uint8_t coordinator_pk[32]; /* Ed25519: CURVE server key and manifest trust */
    uint32_t devices;           /* devices in the whole fleet */
    uint32_t first, count;      /* this process simulates [first, first + count) */
    uint64_t seed;
    double fail_rate;                /* fraction of faulty devices */
    const char *fault;               /* "selftest", "hang", "crash" or "mixed" */
    const char *hw_class;            /* device class (default "sim-gw") */
    const char *cpu_class;           /* default "x86-64" */
    uint64_t ram_bytes, flash_bytes; /* defaults 16 MiB, 64 MiB */
    uint32_t latency_budget_us;
    const char *labels;     /* extra labels "k=v,..." */
    uint32_t sites;         /* devices get site=site<i % sites> (default 4) */
    const char *model;      /* model name devices accept ("" = any) */
    const uint8_t *initial; /* artifact every device starts on (may be NULL) */
    size_t initial_len;
    const uint8_t *initial_manifest;
    size_t initial_manifest_len;
    int heartbeat_ms; /* default 10000 */
    int latency_runs; /* default 1 */
    int http;         /* 1: offers naming an artifact cache (rollout serve --artifact-url) are
                         fetched there, over one HTTP connection the process's devices share
                         (edge_http.h); every byte is still checked by each device */
} cnd_fleet_sim_opts_t;

typedef struct cnd_fleet_sim cnd_fleet_sim_t;

/* Builds the devices (identities, stores, provisioning with the initial artifact through the
 * device's own install path) and their connections. Returns 0 or an error. */
CND_MUST_USE int cnd_fleet_sim_new(cnd_fleet_sim_t **out, const cnd_fleet_sim_opts_t *o);
void cnd_fleet_sim_destroy(cnd_fleet_sim_t **s);

/* Runs the event loop until *stop, max_seconds, or done(ctx, s) returns nonzero (checked about
 * five times a second). */
CND_MUST_USE int cnd_fleet_sim_run(cnd_fleet_sim_t *s, volatile sig_atomic_t *stop,
                                   double max_seconds, int (*done)(void *ctx, cnd_fleet_sim_t *s),
                                   void *ctx);

uint32_t cnd_fleet_sim_count(const cnd_fleet_sim_t *s);
const char *cnd_fleet_sim_name(const cnd_fleet_sim_t *s, uint32_t i);
/* Device i's Ed25519 identity key (32 bytes). */
const uint8_t *cnd_fleet_sim_pubkey(const cnd_fleet_sim_t *s, uint32_t i);
cnd_edge_fault_t cnd_fleet_sim_fault(const cnd_fleet_sim_t *s, uint32_t i);
void cnd_fleet_sim_status(const cnd_fleet_sim_t *s, uint32_t i, cnd_edge_status_t *st);
/* Devices with a session (their profile went out). */
uint32_t cnd_fleet_sim_connected(const cnd_fleet_sim_t *s);

typedef struct {
    uint64_t frames_in, frames_out, send_failures;
    uint64_t pool_bytes;   /* shared blobs and private state of all stores */
    uint64_t reboots;      /* CRASH faults that fired */
    uint64_t failovers;    /* connections moved to the next endpoint (endpoint lists) */
    uint64_t dial_retries; /* dials that failed (no descriptor or socket free) and were retried */
} cnd_fleet_sim_stats_t;
void cnd_fleet_sim_stats(const cnd_fleet_sim_t *s, cnd_fleet_sim_stats_t *st);

/* The device name of global index i ("sim-00042"). */
void cnd_fleet_sim_device_name(char out[32], uint32_t i);

#endif
