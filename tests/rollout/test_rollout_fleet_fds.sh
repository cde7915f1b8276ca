#!/usr/bin/env bash
# test_rollout_fleet_fds.sh BIN MKART: fleet-sim under a low file descriptor limit (issue 20).
# Every simulated device holds two descriptors (its socket's mailbox and TCP connection), and a
# socket closed at a failover keeps them until libzmq's reaper frees it; 100,000-device runs lost
# whole simulator processes to "creating DEALER: Too many open files". Checks:
#   1. a shard that cannot fit under the hard limit is refused before anything starts, with a
#      message naming the limit; so is one that would fit but for the descriptors the process
#      inherited open (counted, named in the message);
#   2. a soft limit below the need is raised to the hard one;
#   3. 60 devices with a hard limit that leaves a handful of spare sockets, two of their three
#      endpoints dead (nothing listens: about two devices in three fail over every 0.5 s until
#      they reach the live one, closing and dialling sockets all the while): no process dies,
#      every device connects and a rollout to all 60 completes healthy, every device on v2.
#      Dials that found no socket or descriptor free were retried (counted in the summary).
set -euo pipefail
bin=$1 mkart=$2
command -v sqlite3 > /dev/null && command -v python3 > /dev/null || { echo "SKIP: needs sqlite3 and python3" >&2; exit 77; }
w=$(mktemp -d /tmp/cnd_fleet_fds.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$w"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -n 20 "$w"/*.log >&2 || true; exit 1; }
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds, by the clock
  local end=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.2; done
  return 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
q() { sqlite3 "$c/coordinator.db" "$1"; }

n=60
c="$w/coord"
"$mkart" "$w/v1.cndq" 1 8 1
"$mkart" "$w/v2.cndq" 1 8 2
v2=$(sha256sum "$w/v2.cndq" | cut -d' ' -f1)
"$bin" rollout init --dir "$c" > /dev/null
"$bin" rollout publish "$w/v1.cndq" --dir "$c" --model fm --version 1 --manifest-out "$w/v1.man" > /dev/null
"$bin" rollout publish "$w/v2.cndq" --dir "$c" --model fm --version 2 > /dev/null
live="tcp://127.0.0.1:$(port)"
list="tcp://127.0.0.1:$(port),tcp://127.0.0.1:$(port),$live" # the first two: nothing listens
sim() { # sim ARGS...: fleet-sim against the list, in this (sub)shell's limits
  "$bin" fleet-sim --devices $n --endpoint "$list" --failover 0.5 --coordinator-key "$c/identity.pub" \
    --coordinator-dir "$c" --initial "$w/v1.cndq" --initial-manifest "$w/v1.man" --heartbeat-ms 1000 "$@"
}

# 1. Refused before anything starts: the hard limit is too low; or it would do, but for 80
# descriptors inherited open.
if (ulimit -n 150; sim --duration 5 --quiet) > "$w/low.log" 2>&1; then fail "60 devices ran under a limit of 150"; fi
grep -q "the limit is 150" "$w/low.log" || fail "limit not named: $(cat "$w/low.log")"
if (ulimit -n 220; for i in $(seq 80); do exec {fd}< /dev/null; done; sim --duration 5 --quiet) > "$w/inherited.log" 2>&1; then
  fail "60 devices ran beside 80 inherited descriptors under a limit of 220"
fi
grep -q "8[0-9] open already" "$w/inherited.log" || fail "open descriptors not named: $(cat "$w/inherited.log")"
[ "$(q 'SELECT count(*) FROM fleet_device')" = 0 ] || fail "a refused simulator enrolled devices"

# 2 and 3. Soft limit 64 (raised), hard limit 2 per device + 64 + 12: about 4 spare sockets.
"$bin" rollout serve --dir "$c" --endpoint "$live" --heartbeat-ms 1000 --offline-after 10 2> "$w/serve.log" &
pids+=($!)
(ulimit -S -n 64; ulimit -H -n $((2 * n + 64 + 12)); sim --duration 150 --report "$w/report.txt" --quiet) > "$w/sim.log" 2>&1 &
simpid=$!
pids+=($simpid)
profiled() { [ "$(q 'SELECT count(*) FROM fleet_device WHERE profile_ms > 0')" = $n ]; }
wait_for 60 profiled || fail "$(q 'SELECT count(*) FROM fleet_device WHERE profile_ms > 0') of $n devices reported a profile"
"$bin" rollout create --dir "$c" --model fm@2 --canary 5 --rate 20 --factor 2 --chunk 8192 \
  --device-timeout 120 > "$w/create.log" || fail "rollout create"
completed() { [ "$(q 'SELECT state FROM rollout WHERE id = 1')" = completed ]; }
wait_for 120 completed || fail "rollout not completed: $(q 'SELECT state, count(*) FROM rollout_device GROUP BY state')"
wait $simpid || fail "fleet-sim failed: $(cat "$w/sim.log")"
grep -q "fleet-sim: error:" "$w/sim.log" && fail "fleet-sim: $(cat "$w/sim.log")"
grep -q "Too many open files); retrying" "$w/sim.log" && echo "a dial met the descriptor limit and was retried (said once)"
[ "$(q "SELECT count(*) FROM rollout_device WHERE rollout = 1 AND state = 'healthy'")" = $n ] ||
  fail "not all healthy: $(q 'SELECT state, count(*) FROM rollout_device GROUP BY state')"
[ "$(grep -c " $v2 " "$w/report.txt")" = $n ] || fail "devices not on v2: $(grep -v " $v2 " "$w/report.txt" | head)"
fo=$(sed -n 's/.*failovers \([0-9]*\), dial retries \([0-9]*\).*/\1 \2/p' "$w/sim.log")
[ -n "$fo" ] || fail "no summary: $(cat "$w/sim.log")"
[ "${fo% *}" -gt 0 ] || fail "no device failed over: the dead endpoints were not exercised"
echo "test_rollout_fleet_fds: ok ($n devices, failovers and dial retries: $fo)"
