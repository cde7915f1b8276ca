/*
 * audit_actions.h: the vocabulary of audit entries: which actions exist, what `subject` and
 * `job` hold for each, and the keys of their `details` and `digests`. The auditor tools
 * (`condenser audit report`, `reconcile`) read the log through this vocabulary and nothing else,
 * so a node that logs an event under another name or with other keys makes it invisible to
 * them. docs/auditor-guide.md ("What is recorded") repeats this table for auditors.
 *
 * Conventions:
 *   - actor: the fingerprint (cnd_audit_fingerprint: hex SHA-256 of the Ed25519 public key) of
 *     the node or operator identity that acted. Peers and sites in details are fingerprints too.
 *   - job: the job id for everything that belongs to a job (rounds, models, artifacts, and the
 *     rollouts of its models), else "".
 *   - Times are the entry's time_ms; details hold only what the event itself says.
 *   - Numbers: integers for counts and bytes, decimals for metrics (accuracy in [0, 1]).
 *   - Digests are SHA-256 of the exact bytes named; names below.
 *   - Unknown extra details keys are allowed (tools ignore them); the listed ones must have the
 *     listed types when present. "required" keys are what the report needs.
 */
#ifndef CND_AUDIT_ACTIONS_H
#define CND_AUDIT_ACTIONS_H

/* --- identities ---
 * enroll        subject: fingerprint of the identity admitted.
 *               details: {"name": str (site/device name, required), "role": "site"|"device"|
 *                         "coordinator"|"operator" (required), "public_key": hex}
 * cert.issue    subject: fingerprint. details: {"name", "role", "serial": hex, "not_after": unix s}
 *               digests: {"certificate": DER bytes}
 * cert.revoke   subject: fingerprint. details: {"serial": hex, "reason": str}
 * cert.renew    an enrolled identity's certificate replaced by its successor (`site renew`).
 *               subject: the identity's fingerprint from now on (a new one for a rotation).
 *               details: {"name": str (required), "role": str (required), "kind": "renewal"
 *                         (same key) | "rotation" (new key; the old one is retired) (required),
 *                         "serial": int (the new certificate's, as `ca list` numbers it),
 *                         "not_after": unix s, "public_key": hex (the key now enrolled),
 *                         "supersedes": {"fingerprint": the previous key's fingerprint
 *                         (required), "serial": int, "not_after": unix s}}
 *               digests: {"certificate": the new DER (required), "superseded_certificate":
 *                         the previous DER} */
#define CND_AUDIT_ENROLL      "enroll"
#define CND_AUDIT_CERT_ISSUE  "cert.issue"
#define CND_AUDIT_CERT_REVOKE "cert.revoke"
#define CND_AUDIT_CERT_RENEW  "cert.renew"

/* --- jobs and rounds ---
 * job.create    subject: job id; job: job id.
 *               details: {"name": str, "recipe": {the full recipe object: teacher, student,
 *                         distillation, qat, bits, rounds, sites_per_round, quorum, threshold,
 *                         deadlines, ...} (required)}
 *               digests: {"teacher": model file, "student_init": model file} when shipped
 * job.state     subject: job id. details: {"state": "running"|"completed"|"failed"|"cancelled"
 *                         (required), "reason": str}
 * round.start   subject: "round N". details: {"round": int (required), "sites": [fingerprint]}
 *               digests: {"global_model": the model sent}
 * round.end     subject: "round N".
 *               details: {"round": int (required), "status": "ok"|"failed" (required),
 *                         "participants": [fingerprint] (required: sites whose update is in the
 *                         aggregate), "dropouts": [fingerprint] (required: selected sites that
 *                         dropped out), "metrics": {"accuracy": num, "loss": num, "samples": int}
 *                         (aggregate of the sites' reported metrics), "qat": bool,
 *                         "reason": str (why it failed)}
 *               digests: {"aggregate": the recovered sum, "model": the new global model} */
#define CND_AUDIT_JOB_CREATE  "job.create"
#define CND_AUDIT_JOB_STATE   "job.state"
#define CND_AUDIT_ROUND_START "round.start"
#define CND_AUDIT_ROUND_END   "round.end"

/* --- models and artifacts ---
 * model.version subject: version name. details: {"version": str (required), "round": int,
 *                         "format": "float"|"int8"|"w4a8"|... (required), "size": bytes,
 *                         "accuracy": num, "source": hex SHA-256 of the float model an
 *                         artifact was frozen from}
 *               digests: {"model": the model or artifact file (required)}
 * artifact.sign subject: version name. details: {"version": str (required), "sequence": int
 *                         (required; per model name, each above the last), "variant": str,
 *                         "size": bytes, "device_class": str, "expires": unix s,
 *                         "rollback": bool, "signer": fingerprint}
 *               digests: {"artifact": the artifact bytes (required), "manifest": the signed
 *                         manifest} */
#define CND_AUDIT_MODEL_VERSION "model.version"
#define CND_AUDIT_ARTIFACT_SIGN "artifact.sign"

/* --- rollouts ---
 * rollout.create subject: rollout id. details: {"rollout": str (required), "version": str
 *                         (required), "select": str, "devices": int, "canary": int}
 * rollout.wave   subject: rollout id. One entry per finished wave (wave 0 is the canary).
 *                details: {"rollout": str (required), "wave": int (required), "devices": int
 *                          (required), "succeeded": int (required), "failed": int (required),
 *                          "timed_out": int (required), "state": "continue"|"aborted"|"done"}
 * rollout.device subject: device fingerprint. details: {"rollout": str, "wave": int,
 *                          "outcome": "healthy"|"failed"|"timeout"|"rolled_back", "reason": str}
 * rollout.state  subject: rollout id. details: {"rollout": str, "state": "paused"|"resumed"|
 *                          "aborted"|"completed"|"rolled_back", "reason": str} */
#define CND_AUDIT_ROLLOUT_CREATE "rollout.create"
#define CND_AUDIT_ROLLOUT_WAVE   "rollout.wave"
#define CND_AUDIT_ROLLOUT_DEVICE "rollout.device"
#define CND_AUDIT_ROLLOUT_STATE  "rollout.state"

/* --- messages (what left a node and what reached it) ---
 * egress        logged by the sender for every message it sent; ingress: by the receiver for
 *               every message it accepted. Use cnd_audit_log_message() so both ends agree.
 *               subject: the peer's fingerprint.
 *               details: {"peer": fingerprint (required), "type": message type name (required),
 *                         "size": bytes on the wire (required), "round": int}
 *               digests: {"message": SHA-256 of the exact bytes on the wire (required)}
 * `condenser audit reconcile` matches a site's egress to its coordinator's ingress by
 * (message digest, size); "bytes that left each site" in the report sums these sizes. */
#define CND_AUDIT_EGRESS  "egress"
#define CND_AUDIT_INGRESS "ingress"

/* --- refusals ---
 * reject.connection subject: the peer's key (hex) or address.
 *                   details: {"address": str, "reason": str (required)}
 * reject.message    subject: the peer's fingerprint.
 *                   details: {"peer": fingerprint, "type": str, "size": int, "reason": str
 *                             (required)} digests: {"message": the rejected bytes} */
#define CND_AUDIT_REJECT_CONNECTION "reject.connection"
#define CND_AUDIT_REJECT_MESSAGE    "reject.message"
/* reject.summary    refusals counted but not recorded one by one (audit_limit.h): a node records
 *                   the first few refusals of each (action, peer, reason class) per window in
 *                   full, then only counts them, and writes this entry when the window ends.
 *                   subject: the peer as in the counted entries ("*" for refusals beyond the
 *                   number of peers the node tracks).
 *                   details: {"action": "reject.message"|"reject.connection" (required),
 *                             "peer": str, "reason": str (the class: an error code name or a
 *                             short fixed text), "count": int (required: refusals not recorded
 *                             one by one), "recorded": int (recorded in full in the window),
 *                             "seconds": int (window length)} */
#define CND_AUDIT_REJECT_SUMMARY "reject.summary"
/* site.refuse       a site refused what its coordinator asked, by the site's own rules (a round
 *                   asked twice or beyond its attempts, a recipe out of the site's policy).
 *                   Logged by the site. subject: the coordinator's fingerprint. job: job id.
 *                   details: {"what": "round"|"job" (required), "reason": str (required),
 *                             "round": int, "attempt": int} */
#define CND_AUDIT_SITE_REFUSE "site.refuse"
/* dp.spend          a site trained one round with DP-SGD; logged by the site before the round's
 *                   update leaves it (agent/agent_dp.h). subject: the coordinator's fingerprint.
 *                   job: job id. details: {"round": int, "attempt": int, "q": num (sampling
 *                   rate), "sigma": num (noise multiplier), "steps": int (this round's),
 *                   "delta": num (the job's), "epsilon": num (the job's spend so far at delta,
 *                   this round included), "total_delta": num, "epsilon_total": num (every
 *                   spend of the site composed, at total_delta)} (all required); a round of
 *                   distributed DP (proto/job_dp.h) adds "mechanism": "ddg", "l2", "l1", "s2"
 *                   (nums), "parties", "dim" (ints): one release of the distributed discrete
 *                   Gaussian sum (common/dp_accountant.h), with q 1, sigma the noise
 *                   multiplier and steps 1 for information;
 *                   `condenser audit privacy` recomputes both epsilons from the entries */
#define CND_AUDIT_DP_SPEND "dp.spend"

/* --- sessions ---
 * session.end       a node's session with this daemon ended other than by the node closing it
 *                   cleanly: subject: the node's fingerprint.
 *                   details: {"name": str (required), "reason": "revoked"|"expired"|"certificate"|
 *                             "renewed" (its certificate was renewed: ended after its round)|
 *                             "rotated" (its key was rotated)|"superseded"|"connection lost"|
 *                             "slow reader" (required),
 *                             "detail": str, "address": str (the peer's IP)}
 *                   A session that ends while its node takes part in a round makes the node a
 *                   dropout of that round (round.end lists it). */
#define CND_AUDIT_SESSION_END "session.end"

/* --- operator actions ---
 * admin.<command> e.g. admin.job.create, admin.job.cancel, admin.site.enroll,
 *                 admin.site.revoke, admin.rollout.pause: an operator ran a command.
 *                 actor: the operator identity's fingerprint (or "local:<unix user>").
 *                 subject: what it acted on. details: {"argv": the exact command line, every
 *                 word as the process received it, argv[0] included (array of strings,
 *                 required; cnd_audit_log_admin), "result": "ok"|error text}. Entries written
 *                 before argv was recorded have "command" instead: the words after the
 *                 subcommand's name joined by spaces (quoting and words lost); readers show
 *                 it as such. */
#define CND_AUDIT_ADMIN_PREFIX "admin."

#endif
