#!/usr/bin/env bash
# test_cli_json.sh BIN: the commands that list or show, as an operator runs them, on a small
# real federation (CA, coordinator, 3 site agents as processes on loopback, a 2-round job that
# ends with a signed int8 artifact). For every such command the --json output parses (python3's
# json module), carries every field the text shows with the same values, and says null (text
# "n/a") for a number it does not have. The artifact has one digest everywhere: `job show`,
# `job export`, `info`, the signed manifest and `quantize` name the SHA-256 of the file's bytes.
set -euo pipefail
command -v python3 > /dev/null || exit 77
bin=$1
w=$(mktemp -d /tmp/cnd_cli_json.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done; wait 2> /dev/null || true; rm -rf "$w"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -n 20 "$w"/*.log >&2 || true; exit 1; }
# check NAME: runs the python3 program on stdin with the work directory as argv[1].
check() { python3 - "$w" > "$w/$1.check" 2>&1 || fail "$1: $(cat "$w/$1.check")"; }

# Synthetic 8x8 images of 4 classes (class c brightens quadrant c) as IDX files.
mkdata() {
  python3 - "$@" <<'PY'
import random, struct, sys
img, lab, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = random.Random(seed)
ims = bytearray(struct.pack('>IIII', 0x803, n, 8, 8)); lbs = bytearray(struct.pack('>II', 0x801, n))
for _ in range(n):
    c = r.randrange(4); lbs.append(c)
    for y in range(8):
        for x in range(8):
            v = (170 if (y >= 4) * 2 + (x >= 4) == c else 60) + 40 * r.gauss(0, 1)
            ims.append(max(0, min(255, int(v))))
open(img, 'wb').write(ims); open(lab, 'wb').write(lbs)
PY
}

c="$w/coord"
"$bin" ca init --dir "$w/ca" --name "test federation" > /dev/null
"$bin" coordinator init --dir "$c" --ca "$w/ca" > /dev/null
mkdata "$w/pub-img.idx" "$w/pub-lab.idx" 300 9
mkdata "$w/t-img.idx" "$w/t-lab.idx" 400 8
pub="idx:$w/pub-img.idx,$w/pub-lab.idx"
"$bin" train --data "idx:$w/t-img.idx,$w/t-lab.idx" --test "$pub" --arch "flatten dense(16) relu dense(4)" \
  --epochs 2 --threads 1 --out "$w/teacher.cnd" > /dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for s in 0 1 2; do
  d="$w/site-$s"
  "$bin" keygen --out "$d" > /dev/null
  "$bin" ca issue --dir "$w/ca" --name site-$s --role site --pubkey "$d/identity.pub" --out "$d/site.pem" > /dev/null
  "$bin" site enroll site-$s --cert "$d/site.pem" --dir "$c" > /dev/null
  mkdata "$d/images.idx" "$d/labels.idx" 150 $((100 + s))
  printf '[site]\nname = site-%s\ndata = idx:images.idx,labels.idx\nvalidation = 0.2\n[identity]\nkey = identity.key\ncertificate = site.pem\n[coordinator]\nendpoint = tcp://127.0.0.1:%s\npublic_key = %s\nca_cert = ../ca/ca.crt\nca_crl = ../ca/crl.pem\n[limits]\nthreads = 1\n' \
    "$s" "$port" "$c/identity.pub" > "$d/agent.ini"
done
"$bin" job create --dir "$c" --name 'json "job"' --student-arch "flatten dense(8) relu dense(4)" \
  --teacher "$w/teacher.cnd" --calib-data "$pub" --rounds 2 --sites 3 --batch 16 --lr 0.01 \
  --advertise-ms 4000 --share-ms 4000 --masked-ms 20000 --unmask-ms 4000 > /dev/null
# Before the job runs: no rounds, version 0 without an accuracy.
"$bin" job show 1 --dir "$c" > "$w/show0.txt"
"$bin" job show 1 --dir "$c" --json > "$w/show0.json"
"$bin" coordinator run --dir "$c" --endpoint "tcp://127.0.0.1:$port" --until-done --heartbeat-ms 500 \
  2> "$w/coordinator.log" &
cpid=$!
pids+=($cpid)
for s in 0 1 2; do
  "$bin" agent --config "$w/site-$s/agent.ini" --until-done --max-seconds 90 2> "$w/agent-$s.log" &
  pids+=($!)
done
wait "$cpid" || fail "coordinator exited with $?"
"$bin" job show 1 --dir "$c" > "$w/show.txt"
"$bin" job show 1 --dir "$c" --json > "$w/show.json"
"$bin" job list --dir "$c" > "$w/list.txt"
"$bin" job list --dir "$c" --json > "$w/list.json"
check job <<'PY'
import json, re, sys
w = sys.argv[1]
t0, j0 = open(w + "/show0.txt").read(), json.load(open(w + "/show0.json"))
assert j0["rounds"] == [] and len(j0["models"]) == 1, j0
assert j0["models"][0]["accuracy"] is None and j0["models"][0]["version"] == 0, j0
assert "-1.0000" not in t0 and re.search(r"^0 +0 +float +\d+ +n/a +[0-9a-f]{64}$", t0, re.M), t0
text, j = open(w + "/show.txt").read(), json.load(open(w + "/show.json"))
assert "-1.0000" not in text and "-1.0" not in json.dumps(j), text
assert j["id"] == 1 and j["name"] == 'json "job"' and j["state"] == "completed", j
assert text.startswith('job 1 "json "job"": completed'), text
assert json.loads(text.split("\n")[1][len("recipe "):]) == j["recipe"], "recipe"
rows = re.findall(r"^(\d+) +(\d+) +(\w+) +(\w+) +(\d+) +(\d+) +(\S+) +(\S+) +([\d.]+) +([\d.]+) *(.*)$", text, re.M)
assert len(rows) == len(j["rounds"]) == 2, (rows, j["rounds"])
for row, r in zip(rows, j["rounds"]):
    assert (int(row[0]), int(row[1]), row[2], row[3]) == (r["round"], r["attempt"], r["phase"], r["outcome"]), (row, r)
    assert int(row[4]) == r["participants"] == len(r["sites"]) == 3 and int(row[5]) == r["survivors"], (row, r)
    assert row[6] == "%.4f" % r["accuracy"] and row[7] == "%.4f" % r["loss"], (row, r)
    assert abs(float(row[8]) - r["seconds"]["secagg"]) < 6e-4 and abs(float(row[9]) - r["seconds"]["total"]) < 6e-3, (row, r)
    assert row[10] == r["reason"], (row, r)
    # metrics exist only as the survivors' secure sums: no site has its own
    assert all("accuracy" not in s and "loss" not in s and "samples" not in s for s in r["sites"]), r
    assert 0 <= r["accuracy"] <= 1 and r["loss"] >= 0, r
models = re.findall(r"^(\d+) +(\d+) +(float|int8) +(\d+) +(\S+) +([0-9a-f]{64})$", text, re.M)
assert len(models) == len(j["models"]) == 4, (models, j["models"])
for row, m in zip(models, j["models"]):
    assert (int(row[0]), int(row[1]), row[2], int(row[3]), row[5]) == (m["version"], m["round"], m["format"], m["size"], m["sha256"]), (row, m)
    assert (row[4] == "n/a") == (m["accuracy"] is None), (row, m)
    assert m["accuracy"] is None or row[4] == "%.4f" % m["accuracy"], (row, m)
    assert m["signed"] == (m["format"] == "int8"), m
assert [m["accuracy"] is None for m in j["models"]] == [True, False, False, True], j["models"]
lt, lj = open(w + "/list.txt").read().split("\n"), json.load(open(w + "/list.json"))
assert lt[0].split() == ["id", "state", "rounds", "created", "name"] and len(lj) == 1, (lt, lj)
x = lj[0]
assert lt[1].split(None, 4) == [str(x["id"]), x["state"], "%d/%d" % (x["rounds_done"], x["rounds"]), x["created"], x["name"]], (lt, x)
assert (x["id"], x["state"], x["rounds_done"], x["rounds"], x["name"]) == (1, "completed", 2, 2, 'json "job"'), x
assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", x["created"]), x
PY

# job show's privacy: none for job 1; DP-SGD at each site (job 2, QAT rounds included) and
# distributed DP (job 3) with their noise, clip, delta, target and survivors, text and JSON alike.
"$bin" job create --dir "$c" --name dp-local --student-arch "flatten dense(8) tanh dense(4)" \
  --teacher "$w/teacher.cnd" --calib-data "$pub" --rounds 3 --qat-rounds 1 --sites 3 --batch 16 \
  --dp-epsilon 2.5 --dp-delta 1e-6 --dp-clip 0.7 --dp-site-samples 1000 > /dev/null
"$bin" job create --dir "$c" --name dp-ddp --student-arch "flatten dense(8) relu dense(4)" \
  --teacher "$w/teacher.cnd" --rounds 2 --sites 3 --quorum 2 --dp-mode distributed \
  --dp-noise 1.5 --dp-clip 0.05 --dp-min-survivors 2 > /dev/null
for id in 1 2 3; do
  "$bin" job show $id --dir "$c" > "$w/dp$id.txt"
  "$bin" job show $id --dir "$c" --json > "$w/dp$id.json"
done
check dp <<'PY'
import json, re, sys
w = sys.argv[1]
t = {i: open("%s/dp%d.txt" % (w, i)).read() for i in (1, 2, 3)}
j = {i: json.load(open("%s/dp%d.json" % (w, i)))["privacy"] for i in (1, 2, 3)}
assert j[1] == {"dp_mode": "none", "noise_multiplier": None, "clip": None, "delta": None,
                "target_epsilon": None, "min_survivors": None, "assumed_site_samples": None}, j[1]
assert "\nprivacy: no differential privacy" in t[1], t[1]
p = j[2]
assert p["dp_mode"] == "local" and p["clip"] == 0.7 and p["delta"] == 1e-6, p
assert p["target_epsilon"] == 2.5 and p["assumed_site_samples"] == 1000 and p["min_survivors"] is None, p
assert p["noise_multiplier"] > 0.3, p
m = re.search(r"^privacy: local, noise multiplier ([0-9.]+), clip 0.7 \(per-sample gradient\), "
              r"delta 1e-06, target epsilon 2.5 for a site of 1000 records .*QAT rounds train under the same DP$", t[2], re.M)
assert m and abs(float(m.group(1)) - p["noise_multiplier"]) <= 1e-5 * p["noise_multiplier"], t[2]
p = j[3]
assert p == {"dp_mode": "distributed", "noise_multiplier": 1.5, "clip": 0.05, "delta": 1e-5,
             "target_epsilon": None, "min_survivors": 2, "assumed_site_samples": None}, p
assert re.search(r"^privacy: distributed, noise multiplier 1.5, clip 0.05 \(each site's round update\), "
                 r"delta 1e-05, min survivors 2 ", t[3], re.M), t[3]
PY
# Site side: what the agent did and what left the site.
"$bin" agent status --config "$w/site-1/agent.ini" > "$w/agent.txt"
"$bin" agent status --config "$w/site-1/agent.ini" --json > "$w/agent.json"
"$bin" site list --dir "$c" > "$w/sites.txt"
"$bin" site list --dir "$c" --json > "$w/sites.json"
check agent <<'PY'
import json, re, sys
w = sys.argv[1]
text, j = open(w + "/agent.txt").read(), json.load(open(w + "/agent.json"))
assert text.startswith("site site-1 (%s)\n" % j["database"]) and j["site"] == "site-1", (text, j)
rows = re.findall(r"^  job (\d+) +round (\d+) +try (\d+) +id (\d+)/(\d+) +(\w+) +(\w+) +acc (\S+) +(\d+) samples  (.*)$", text, re.M)
assert len(rows) == len(j["rounds"]) == 2, (rows, j["rounds"])
for row, r in zip(rows, j["rounds"]):
    assert tuple(int(x) for x in row[:5]) == (r["job"], r["round"], r["attempt"], r["participant_id"], r["participants"]), (row, r)
    assert (row[5], row[6], int(row[8]), row[9]) == (r["phase"], r["outcome"] or "running", r["samples"], r["reason"]), (row, r)
    assert r["samples"] > 0 and row[7] == "%.4f" % r["val_accuracy"] and 0 <= r["val_accuracy"] <= 1, (row, r)
for key, label in (("sent", "left the site"), ("received", "received")):
    d = j[key]
    m = re.search(r"^%s: (\d+) messages, (\d+) bytes$" % label, text, re.M)
    assert m and (int(m.group(1)), int(m.group(2))) == (d["messages"], d["bytes"]), (label, d)
    assert sum(t["messages"] for t in d["by_type"]) == d["messages"] and sum(t["bytes"] for t in d["by_type"]) == d["bytes"], d
    for t in d["by_type"]:
        assert re.search(r"^  %s +%d messages +%d bytes$" % (t["type"], t["messages"], t["bytes"]), text, re.M), t
assert {t["type"] for t in j["sent"]["by_type"]} >= {"hello", "masked_input"}, j["sent"]
st, sj = open(w + "/sites.txt").read().split("\n")[1:-1], json.load(open(w + "/sites.json"))
assert len(st) == len(sj) == 3, (st, sj)
for line, x in zip(st, sj):
    f = line.split()
    assert f[:4] == [x["name"], x["role"], x["state"], x["enrolled"]], (line, x)
    assert f[4:7] == [str(x["serial"]), x["not_after"], str(x["days_left"])], (line, x)
    assert f[7] == "SHA256:%s..." % x["fingerprint"][:16] and x["expiry"] == "ok", (line, x)
    assert x["certificate"] is True and re.match(r"^[0-9a-f]{64}$", x["fingerprint"]), x
PY
# Rollouts: the job's end put its int8 artifact in the artifact registry (condenser/job-1@2), so
# publishing the same bytes again is refused, naming it; enroll a device that no variant fits (it
# never reported a profile), create a rollout of it with an offer window, list and show it.
"$bin" job export 1 --dir "$c" --format int8 --out "$w/s.cndq" > "$w/export.txt"
"$bin" rollout init --dir "$c" > /dev/null
set +e
"$bin" rollout publish "$w/s.cndq" --dir "$c" --model fm --version 1 2> "$w/republish.err"; code=$?
set -e
[ $code = 1 ] && grep -q "published already as condenser/job-1@2" "$w/republish.err" ||
  fail "rollout publish of the job's artifact again: $code $(cat "$w/republish.err")"
"$bin" keygen --out "$w/dev" > /dev/null
"$bin" rollout enroll dev-a --key "$w/dev/identity.pub" --dir "$c" > /dev/null
"$bin" rollout create --dir "$c" --model condenser/job-1@2 --window 01:30-05:00 > /dev/null
"$bin" rollout list --dir "$c" > "$w/rl.txt"
"$bin" rollout list --dir "$c" --json > "$w/rl.json"
"$bin" rollout show 1 --dir "$c" --devices > "$w/rs.txt"
"$bin" rollout show 1 --dir "$c" --devices --json > "$w/rs.json"
"$bin" rollout show 1 --dir "$c" --json > "$w/rs-nodev.json"
set +e
"$bin" rollout show x --dir "$c" 2> "$w/rs-bad.err"; code=$?
set -e
[ $code = 2 ] && grep -q "'x' is not a rollout id" "$w/rs-bad.err" || fail "rollout show x: $code $(cat "$w/rs-bad.err")"
check rollout <<'PY'
import hashlib, json, re, sys
w = sys.argv[1]
digest = hashlib.sha256(open(w + "/s.cndq", "rb").read()).hexdigest()
show = json.load(open(w + "/show.json"))
assert [m["sha256"] for m in show["models"] if m["format"] == "int8"] == [digest], (digest, show["models"])
assert "sha256:%s" % digest in open(w + "/export.txt").read()
lt, lj = open(w + "/rl.txt").read(), json.load(open(w + "/rl.json"))
assert len(lj["rollouts"]) == 1 and len(lj["artifacts"]) == 1, lj
r, a = lj["rollouts"][0], lj["artifacts"][0]
assert re.search(r"^%d +%s +%s +%d +\(all\) / %s$" % (r["id"], r["version_name"], r["state"], r["wave"], re.escape(r["reason"])), lt, re.M), (lt, r)
assert (r["model"], r["version"], r["version_name"], r["select"]) == ("condenser/job-1", 2, "condenser/job-1@2", ""), r
assert re.search(r"^%d +condenser/job-1@2 +%s +%d +%d +n/a +\(any\)$" % (a["id"], a["variant"], a["size"], a["arena"]), lt, re.M), (lt, a)
assert a["accuracy"] is None and a["sha256"] == digest and a["classes"] == "" and a["size"] == len(open(w + "/s.cndq", "rb").read()), a
st, sj = open(w + "/rs.txt").read(), json.load(open(w + "/rs.json"))
p = sj["policy"]
assert st.startswith("rollout 1 of condenser/job-1@2: %s (%s)\n" % (sj["state"], sj["reason"])), st
line = "select '%s', canary %d, rate %d, factor %g, abort above %g%% after %d, device timeout %d s, window %s, chunk %d, wave now %d" % (
    p["select"], p["canary"], p["rate"], p["factor"], p["abort_failures_pct"], p["abort_min"], p["device_timeout_s"], p["window"], p["chunk"], sj["wave"])
assert line in st and p["window"] == "01:30-05:00" and p["max_active"] == 500, (line, st)
assert len(sj["waves"]) == 1 and sj["waves"][0]["name"] == "canary", sj
x = sj["waves"][0]
assert re.search(r"^canary +%d +%d +%d +%d +%d +%d +%d +%d$" % tuple(x[k] for k in ("devices", "healthy", "failed", "timed_out", "deferred", "open", "rolled_back", "other")), st, re.M), (st, x)
assert len(sj["devices"]) == 1 and sj["devices"][0]["device"] == "dev-a" and sj["devices"][0]["state"] == "skipped", sj
d = sj["devices"][0]
assert "  %-24s wave %-3d %-20s %s\n" % (d["device"], d["wave"], d["state"], d["reason"]) in st, (st, d)
assert "devices" not in json.load(open(w + "/rs-nodev.json"))
PY
# The CA's register (one certificate revoked) and a node identity.
"$bin" ca revoke --dir "$w/ca" --serial 3 > /dev/null
"$bin" ca list --dir "$w/ca" > "$w/ca.txt"
"$bin" ca list --dir "$w/ca" --json > "$w/ca.json"
"$bin" keygen --out "$w/site-0" --show > "$w/key.txt"
"$bin" keygen --out "$w/site-0" --show --json > "$w/key.json"
check ca <<'PY'
import json, re, sys
w = sys.argv[1]
lines, j = open(w + "/ca.txt").read().split("\n")[1:-1], json.load(open(w + "/ca.json"))
assert len(lines) == len(j) == 3, (lines, j)
for line, e in zip(lines, j):
    f = line.split()
    assert f == [str(e["serial"]), e["status"], e["role"], e["expires"], e["name"], "SHA256:" + e["fingerprint"][:16]], (line, e)
    assert (e["revoked_at"] is None) == (e["status"] != "revoked"), e
assert [e["status"] for e in j] == ["valid", "valid", "revoked"], j
sites = {x["name"]: x["fingerprint"] for x in json.load(open(w + "/sites.json"))}
assert all(sites[e["name"]] == e["fingerprint"] for e in j), (sites, j)
text, k = open(w + "/key.txt").read(), json.load(open(w + "/key.json"))
assert text == ("identity     %s (secret, mode 0600)\npublic file  %s\ned25519      %s\nfingerprint  SHA256:%s\n"
                "curve (hex)  %s\ncurve (z85)  %s\n") % (k["identity"], k["public_file"], k["ed25519"], k["fingerprint"], k["curve_hex"], k["curve_z85"]), (text, k)
assert k["fingerprint"] == sites["site-0"], k
PY
# An edge device before and after a local install of the artifact under its signed manifest.
"$bin" edge init --dir "$w/edge" --name 'dev "e"' --endpoint tcp://127.0.0.1:1 \
  --coordinator-key "$c/identity.pub" --class gw --cpu x86-64 --model condenser/job-1 > /dev/null
"$bin" edge status --dir "$w/edge" > "$w/edge0.txt"
"$bin" edge status --dir "$w/edge" --json > "$w/edge0.json"
"$bin" edge install --dir "$w/edge" "$w/s.cndq" --manifest "$w/s.cndq.manifest" > /dev/null
"$bin" edge status --dir "$w/edge" > "$w/edge1.txt"
"$bin" edge status --dir "$w/edge" --json > "$w/edge1.json"
check edge <<'PY'
import hashlib, json, sys
w = sys.argv[1]
t0, j0 = open(w + "/edge0.txt").read(), json.load(open(w + "/edge0.json"))
assert t0 == 'device dev "e": no model\nhighest sequence accepted 0; idle\n', t0
assert j0["name"] == 'dev "e"' and j0["has_model"] is False and j0["digest"] is None and j0["slot_name"] is None, j0
t1, j1 = open(w + "/edge1.txt").read(), json.load(open(w + "/edge1.json"))
digest = hashlib.sha256(open(w + "/s.cndq", "rb").read()).hexdigest()
assert j1["has_model"] is True and j1["digest"] == digest and (j1["model"], j1["version"], j1["sequence"]) == ("condenser/job-1", 2, 1), j1
assert t1 == 'device dev "e": condenser/job-1 %s v2 (sequence 1, slot %s), self-test passed, %d us\nhighest sequence accepted %d; %s\n' % (
    digest, j1["slot_name"], j1["latency_us"], j1["highest_sequence"], "downloading" if j1["downloading"] else "idle"), (t1, j1)
PY
# One digest per artifact: info, quantize and export name the SHA-256 of the file's bytes, the
# digest job show, the manifest and rollout list name; info finds the signed manifest next to
# the artifact and says whether it vouches for it.
"$bin" info "$w/s.cndq" > "$w/info.txt"
"$bin" info "$w/s.cndq" --json > "$w/info.json"
"$bin" info "$w/s.cndq" --key "$c/identity.pub" > "$w/info-key.txt"
"$bin" info "$w/s.cndq" --key "$c/identity.pub" --json > "$w/info-key.json"
cp "$w/s.cndq.manifest" "$w/job1.manifest"
"$bin" info "$w/s.cndq" --manifest "$w/job1.manifest" --json > "$w/info-fm.json"
cp "$w/s.cndq" "$w/bare.cndq"
"$bin" info "$w/bare.cndq" > "$w/info-bare.txt"
"$bin" info "$w/bare.cndq" --json > "$w/info-bare.json"
set +e
"$bin" info "$w/s.cndq" --key "$w/dev/identity.pub" > "$w/info-wrongkey.txt" 2> "$w/info-wrongkey.err"; echo $? > "$w/info-wrongkey.rc"
set -e
"$bin" quantize "$w/teacher.cnd" --data "idx:$w/t-img.idx,$w/t-lab.idx" --test "$pub" --calib 50 \
  --no-report --threads 1 --out "$w/q.cndq" > "$w/quantize.txt"
cp "$w/s.cndq.manifest" "$w/q.cndq.manifest"
set +e
"$bin" info "$w/q.cndq" --json > "$w/info-other.json" 2> "$w/info-other.err"; echo $? > "$w/info-other.rc"
set -e
"$bin" export "$w/q.cndq" --c-array --out "$w/q.c" 2> /dev/null
"$bin" job export 1 --dir "$c" --out "$w/s.cnd" > /dev/null
"$bin" info "$w/s.cnd" > "$w/info-cnd.txt"
"$bin" info "$w/s.cnd" --json > "$w/info-cnd.json"
check info <<'PY'
import hashlib, json, os, re, sys
w = sys.argv[1]
sha = lambda f: hashlib.sha256(open(os.path.join(w, f), "rb").read()).hexdigest()
d = sha("s.cndq")
show = json.load(open(w + "/show.json"))
t, j = open(w + "/info.txt").read(), json.load(open(w + "/info.json"))
assert j["kind"] == "artifact" and j["sha256"] == d and j["bytes"] == os.path.getsize(w + "/s.cndq"), j
assert "sha256    %s\n" % d in t and "content   %s (SHA-256 of the body" % j["content_sha256"] in t, t
assert j["content_sha256"] != d and "signature none" not in t, t
m = j["manifest"]
assert m["path"] == w + "/s.cndq.manifest" and m["vouches"] is True and m["problem"] is None and m["key_checked"] is False, m
assert (m["name"], m["version"], m["sha256"], m["length"]) == ("condenser/job-1", 2, d, j["bytes"]), m
int8 = [x for x in show["models"] if x["format"] == "int8"][0]
assert int8["sha256"] == d and int8["version"] == m["version"], (int8, m)
assert "signature manifest %s: 'condenser/job-1' version 2, sequence %d, expires %s;\n" % (m["path"], m["sequence"], m["expires"]) in t, t
assert "names these bytes; signed by SHA256:%s (not checked against a trusted key: give --key PUB)" % m["signer_fingerprint"] in t, t
assert "self-test %d vectors: passed" % j["self_test"]["vectors"] in t and j["self_test"]["passed"] is True, t
assert "input     1x8x8 int8, scale %g, zero point %d" % (j["input"]["scale"], j["input"]["zero_point"]) in t, t
assert "layers    %d    MACs per inference %d    weight bytes %d    arena bytes %d" % (j["layers"], j["macs"], j["weight_bytes"], j["arena_bytes"]) in t, t
tk, jk = open(w + "/info-key.txt").read(), json.load(open(w + "/info-key.json"))
assert jk["manifest"]["key_checked"] is True and jk["manifest"]["vouches"] is True, jk
assert "signed by the key in %s/coord/identity.pub (SHA256:%s)" % (w, jk["manifest"]["signer_fingerprint"]) in tk, tk
jf = json.load(open(w + "/info-fm.json"))
assert jf["manifest"]["name"] == "condenser/job-1" and jf["manifest"]["version"] == 2 and jf["manifest"]["vouches"], jf
assert jf["manifest_searched"] == [w + "/job1.manifest"], jf
tb, jb = open(w + "/info-bare.txt").read(), json.load(open(w + "/info-bare.json"))
assert jb["manifest"] is None and jb["manifest_searched"] == [w + "/bare.cndq.manifest", w + "/bare.manifest"], jb
assert "signature none: no signed manifest at %s/bare.cndq.manifest or %s/bare.manifest" % (w, w) in tb, tb
assert open(w + "/info-wrongkey.rc").read().strip() == "1", "a manifest signed by another key is an error"
assert "does NOT vouch for this file" in open(w + "/info-wrongkey.txt").read() and "not trusted" in open(w + "/info-wrongkey.err").read()
jo = json.load(open(w + "/info-other.json"))
assert open(w + "/info-other.rc").read().strip() == "1" and jo["manifest"]["vouches"] is False, jo
assert "bytes, manifest says" in jo["manifest"]["problem"] or "SHA-256 differs" in jo["manifest"]["problem"], jo
q = sha("q.cndq")
assert re.search(r"^wrote .*/q\.cndq: .* sha256 %s$" % q, open(w + "/quantize.txt").read(), re.M), open(w + "/quantize.txt").read()
assert " * %d bytes, sha256 %s (the digest a signed manifest names);" % (os.path.getsize(w + "/q.cndq"), q) in open(w + "/q.c").read()
tc, jc = open(w + "/info-cnd.txt").read(), json.load(open(w + "/info-cnd.json"))
last_float = [x for x in show["models"] if x["format"] == "float"][-1]
assert jc["kind"] == "model" and jc["sha256"] == sha("s.cnd") == last_float["sha256"], (jc, last_float)
assert tc.startswith("model   %s/s.cnd\nsha256  %s\narch    %s\ninput   1x8x8   classes 4\n" % (w, jc["sha256"], jc["arch"])), tc
for l in jc["layers"]:
    assert re.search(r"^ *%d  %s +%s +%d +%d +%d$" % (l["index"], re.escape(l["layer"]), "x".join(map(str, l["output"])), l["params"], l["bytes"], l["macs"]), tc, re.M), (l, tc)
assert "total: %d parameters, %d bytes float32, %d MACs per inference" % (jc["params"], jc["bytes"], jc["macs"]) in tc, tc
for k, v in jc["metadata"].items():
    assert re.search(r"^  %s +%s$" % (re.escape(k), re.escape(v)), tc, re.M), (k, v)
assert jc["metadata"]["job"] == 'json "job"', jc["metadata"]
PY
echo "test_cli_json: ok"
