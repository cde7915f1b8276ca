#!/usr/bin/env bash
# test_doctor.sh BIN: `condenser doctor` on a healthy coordinator and agent (exit 0), then each
# fault it must find, with FAIL, the fix it proposes and exit status 1: a private key readable by
# others, a port another process holds, a certificate that has expired (the injected clock,
# CND_TEST_CLOCK_FILE, moves doctor 3 days past a 1-day certificate), a missing data file, a
# state directory that does not exist. --json agrees with the text. Then the agent's clock-skew
# warning (HelloAck's time against its own), doctor --connect (reachable, the site accepted, the
# skew: OK level, WARN 60 s, FAIL 600 s; FAIL with no coordinator or an unenrolled key; not
# connecting while the agent runs), and a second agent for the same site refused.
set -euo pipefail
bin=$1
w=$(mktemp -d /tmp/cnd_doctor.XXXXXX)
holder=
cleanup() { [ -n "$holder" ] && kill "$holder" 2> /dev/null; rm -rf "$w"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# A free port below the kernel's ephemeral range (see tests/lib/http_testutil.h).
free_port() {
  python3 -c 'import random, socket
for p in random.sample(range(20000, 32768), 2000):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()'
}
# expect STATUS CHECK PATTERN FILE: FILE has a line "STATUS CHECK: ...PATTERN..."
expect() { grep -E "^$1 +$2: .*$3" "$4" > /dev/null || { cat "$4" >&2; fail "no '$1 $2: ...$3' line"; }; }

c="$w/coord"
"$bin" ca init --dir "$w/ca" --name "doctor test" > /dev/null
"$bin" coordinator init --dir "$c" --ca "$w/ca" > /dev/null
p1=$(free_port); p2=$(free_port)
"$bin" doctor --coordinator "$c" --endpoint "tcp://127.0.0.1:$p1" --metrics "127.0.0.1:$p2" > "$w/ok.txt" ||
  { cat "$w/ok.txt"; fail "doctor failed a healthy coordinator"; }
expect OK "key permissions" "mode 0600" "$w/ok.txt"
expect OK "state directory" "writable" "$w/ok.txt"
expect OK "database" "opens" "$w/ok.txt"
expect OK "CA certificate" "days left" "$w/ok.txt"
expect OK "site port" "is free" "$w/ok.txt"
expect OK "metrics port" "is free" "$w/ok.txt"
grep -qE '^(OK|WARN) +disk space: ' "$w/ok.txt" || fail "no disk space check"
"$bin" doctor --coordinator "$c" --endpoint "tcp://127.0.0.1:$p1" --json > "$w/ok.json"
python3 - "$w/ok.json" "$w/ok.txt" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["ok"] is True and j["counts"]["fail"] == 0, j
names = [c["name"] for c in j["checks"]]
for n in ("key permissions", "identity key", "database", "CA certificate", "site port", "disk space"):
    assert n in names, names
assert all(c["fix"] is None for c in j["checks"] if c["status"] == "OK"), j
PY
# The same through the daemon's config file.
printf '[coordinator]\ndir = %s\nendpoint = tcp://127.0.0.1:%s\n; metrics = 127.0.0.1:9460\n' "$c" "$p1" > "$w/coordinator.ini"
"$bin" doctor --config "$w/coordinator.ini" > "$w/conf.txt" || { cat "$w/conf.txt"; fail "doctor --config"; }
expect OK "site port" "127.0.0.1:$p1" "$w/conf.txt"

# A key others can read.
chmod 0644 "$c/identity.key"
rc=0; "$bin" doctor --coordinator "$c" --endpoint "tcp://127.0.0.1:$p1" > "$w/perm.txt" 2> "$w/perm.err" || rc=$?
[ $rc = 1 ] || fail "doctor exited $rc with a world-readable key"
expect FAIL "key permissions" "mode 0644: group or others" "$w/perm.txt"
grep -q "fix: chmod 600 $c/identity.key" "$w/perm.txt" || fail "no chmod fix"
grep -q "1 check failed" "$w/perm.err" || fail "no summary error: $(cat "$w/perm.err")"
chmod 0600 "$c/identity.key"

# A port another process listens on.
python3 -c "
import socket, sys, time
s = socket.socket(); s.bind(('127.0.0.1', $p2)); s.listen(); print('up', flush=True); time.sleep(120)" > "$w/holder.out" &
holder=$!
for _ in $(seq 50); do grep -q up "$w/holder.out" && break; sleep 0.1; done
rc=0; "$bin" doctor --coordinator "$c" --endpoint "tcp://127.0.0.1:$p1" --metrics "127.0.0.1:$p2" > "$w/port.txt" 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "doctor exited $rc with the metrics port taken"
expect FAIL "metrics port" "port $p2 is in use" "$w/port.txt"
rc=0; "$bin" doctor --rollout "$c" --endpoint "tcp://127.0.0.1:$p2" --json > "$w/port.json" 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "doctor --rollout exited $rc with its port taken"
python3 - "$w/port.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
bad = [c for c in j["checks"] if c["status"] == "FAIL"]
assert j["ok"] is False and len(bad) == 1 and bad[0]["name"] == "device port" and bad[0]["fix"], j
PY
kill "$holder"; holder=

# An agent: healthy, then an expired certificate, missing data, no state directory.
s="$w/site"
"$bin" keygen --out "$s" > /dev/null
"$bin" ca issue --dir "$w/ca" --name site-a --role site --pubkey "$s/identity.pub" --days 1 --out "$s/site.pem" > /dev/null
# Certificate times have whole seconds: doctor run within the second of issuance sees exactly
# 86,400 s left ("1 day left"); a second later it is "0 days left", which the check below expects.
sleep 1.1
python3 - "$s" <<'PY'
import struct, sys
d = sys.argv[1]
open(d + "/images.idx", "wb").write(struct.pack(">IIII", 0x803, 4, 2, 2) + bytes(16))
open(d + "/labels.idx", "wb").write(struct.pack(">II", 0x801, 4) + bytes([0, 1, 0, 1]))
PY
mkdir "$s/state"
agent_ini() {
  printf '[site]\nname = site-a\ndata = idx:%s,labels.idx\nstate = %s/agent.db\n[identity]\nkey = identity.key\ncertificate = site.pem\n[coordinator]\nendpoint = tcp://127.0.0.1:%s\npublic_key = %s\nca_cert = ../ca/ca.crt\nca_crl = ../ca/crl.pem\n' \
    "$1" "$2" "$p1" "$c/identity.pub" > "$s/agent.ini"
}
agent_ini images.idx state
"$bin" doctor --agent "$s/agent.ini" > "$w/agent.txt" || { cat "$w/agent.txt"; fail "doctor failed a healthy agent"; }
expect OK configuration "site site-a" "$w/agent.txt"
expect OK "key permissions" "mode 0600" "$w/agent.txt"
expect WARN certificate "0 days left" "$w/agent.txt"  # a 1-day certificate: renew now
expect OK data "4 samples, 2 classes" "$w/agent.txt"
expect OK "state directory" "writable" "$w/agent.txt"

echo 259200 > "$w/clock"  # 3 days later
rc=0; CND_TEST_CLOCK_FILE="$w/clock" "$bin" doctor --agent "$s/agent.ini" > "$w/expired.txt" 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "doctor exited $rc with an expired certificate"
expect FAIL certificate "expired [0-9]+ days? ago" "$w/expired.txt"
grep -q "fix: ask the federation operator for a renewal" "$w/expired.txt" || fail "no renewal fix"

agent_ini missing.idx nostate
rc=0; "$bin" doctor --agent "$s/agent.ini" > "$w/data.txt" 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "doctor exited $rc with missing data and state directory"
expect FAIL data "missing.idx" "$w/data.txt"
expect FAIL "state directory" "nostate: cannot create a file" "$w/data.txt"
grep -q "2 checks failed" <("$bin" doctor --agent "$s/agent.ini" 2>&1 >/dev/null) || fail "summary"
# Clock skew, which doctor does not check: the agent warns when HelloAck's time differs from
# its clock by more than 30 s, and only then.
agent_ini images.idx state
"$bin" site enroll site-a --cert "$s/site.pem" --dir "$c" > /dev/null
"$bin" coordinator run --dir "$c" --endpoint "tcp://127.0.0.1:$p1" 2> "$w/coordinator.log" &
holder=$!
hello() { # hello LOG [ENV...]: runs the agent until it is connected, at most 30 s
  env "${@:2}" "$bin" agent --config "$s/agent.ini" --max-seconds 30 2> "$1" &
  local a=$!
  for _ in $(seq 300); do grep -q "connected to coordinator" "$1" && break; sleep 0.1; done
  sleep 0.5
  kill "$a" 2> /dev/null; wait "$a" 2> /dev/null || true
  grep -q "connected to coordinator" "$1" || { cat "$1" >&2; fail "the agent did not connect"; }
}
hello "$w/agent-ok.log"
grep -q "clock is" "$w/agent-ok.log" && fail "a clock-skew warning without skew"
echo 600 > "$w/clock"
hello "$w/agent-skew.log" CND_TEST_CLOCK_FILE="$w/clock"
grep -qE "warn agent site-a: warning: this machine's clock is (59[0-9]|60[0-9]) s ahead of the coordinator's" "$w/agent-skew.log" ||
  { cat "$w/agent-skew.log" >&2; fail "no clock-skew warning 600 s ahead"; }
# doctor --connect: one hello with the site's identity.
"$bin" doctor --agent "$s/agent.ini" --connect > "$w/conn.txt" || { cat "$w/conn.txt" >&2; fail "doctor --connect"; }
expect OK coordinator "accepted this site's key and certificate" "$w/conn.txt"
expect OK "clock skew" "[01] s (ahead of|behind|level with) the coordinator's" "$w/conn.txt"
echo 60 > "$w/clock"
CND_TEST_CLOCK_FILE="$w/clock" "$bin" doctor --agent "$s/agent.ini" --connect > "$w/conn60.txt" ||
  { cat "$w/conn60.txt" >&2; fail "a 60 s skew is a warning, not a failure"; }
expect WARN "clock skew" "(59|60|61) s ahead of the coordinator's" "$w/conn60.txt"
grep -A1 "^WARN *clock skew" "$w/conn60.txt" | grep -q "fix: synchronise" || fail "no fix for skew"
echo -600 > "$w/clock"
rc=0; CND_TEST_CLOCK_FILE="$w/clock" "$bin" doctor --agent "$s/agent.ini" --connect --json > "$w/conn600.json" || rc=$?
[ $rc = 1 ] || fail "doctor --connect exited $rc with the clock 600 s behind"
python3 - "$w/conn600.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
c = {x["name"]: x for x in j["checks"]}
assert c["coordinator"]["status"] == "OK", c
assert c["clock skew"]["status"] == "FAIL" and "behind" in c["clock skew"]["what"], c
PY
grep -q "said hello" "$w/coordinator.log" || fail "the coordinator logged no hello from doctor"
# A site with a CA certificate the coordinator never enrolled.
b="$w/site-b"
"$bin" keygen --out "$b" > /dev/null
"$bin" ca issue --dir "$w/ca" --name site-b --role site --pubkey "$b/identity.pub" --out "$b/site.pem" > /dev/null
cp "$s/images.idx" "$s/labels.idx" "$b/"
mkdir "$b/state"
sed -e 's/site-a/site-b/' "$s/agent.ini" > "$b/agent.ini"
rc=0; "$bin" doctor --agent "$b/agent.ini" --connect > "$w/connb.txt" || rc=$?
[ $rc = 1 ] || { cat "$w/connb.txt" >&2; fail "doctor --connect exited $rc for an unenrolled site"; }
grep -qE "^FAIL +coordinator: .*refused this site's (key|hello)" "$w/connb.txt" || { cat "$w/connb.txt" >&2; fail "unenrolled site"; }
# A state directory that does not exist yet: no agent can hold the lock there, so the hello is
# still said (only the state directory check fails), not refused over the lock file.
sed -e "s|^state = .*|state = nostate/agent.db|" "$s/agent.ini" > "$s/agent-nostate.ini"
rc=0; "$bin" doctor --agent "$s/agent-nostate.ini" --connect > "$w/connns.txt" || rc=$?
[ $rc = 1 ] || { cat "$w/connns.txt" >&2; fail "doctor --connect exited $rc without a state directory"; }
expect FAIL "state directory" "nostate" "$w/connns.txt"
expect OK coordinator "accepted this site's key and certificate" "$w/connns.txt"
# While the agent runs, doctor does not say hello (it would end the agent's session), and a
# second agent for the same site is refused at start.
"$bin" agent --config "$s/agent.ini" --max-seconds 60 2> "$w/agent-run.log" &
a=$!
for _ in $(seq 300); do grep -q "connected to coordinator" "$w/agent-run.log" && break; sleep 0.1; done
"$bin" doctor --agent "$s/agent.ini" --connect > "$w/connrun.txt" || { cat "$w/connrun.txt" >&2; fail "doctor --connect beside the agent"; }
expect WARN coordinator "not connected: an agent runs for site site-a" "$w/connrun.txt"
rc=0; "$bin" agent --config "$s/agent.ini" --max-seconds 5 2> "$w/agent-two.log" || rc=$?
[ $rc != 0 ] || fail "a second agent for the same site started"
grep -q "another agent runs for site site-a" "$w/agent-two.log" || { cat "$w/agent-two.log" >&2; fail "second agent's reason"; }
sleep 1
kill -0 "$a" 2> /dev/null || { cat "$w/agent-run.log" >&2; fail "the first agent stopped"; }
grep -q "DUPLICATE SESSION" "$w/coordinator.log" && fail "a second session while the agent ran"
kill "$a"; wait "$a" 2> /dev/null || true
kill "$holder"; wait "$holder" 2> /dev/null || true; holder=
# No coordinator: no session within 5 s.
rc=0; "$bin" doctor --agent "$s/agent.ini" --connect > "$w/conndown.txt" || rc=$?
[ $rc = 1 ] || fail "doctor --connect exited $rc without a coordinator"
expect FAIL coordinator "no CurveZMQ session within 5 s" "$w/conndown.txt"
rc=0; "$bin" doctor --coordinator "$c" --connect > /dev/null 2> "$w/connarg.err" || rc=$?
[ $rc != 0 ] && grep -q "connect checks an agent" "$w/connarg.err" || fail "--connect without --agent"
echo "ok: doctor"
