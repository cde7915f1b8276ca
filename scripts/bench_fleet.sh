#!/usr/bin/env bash
# scripts/bench_fleet.sh BIN MKART WORK: the `fleet` section of scripts/bench.
# For each fleet size N (FLEET_SIZES, default "1000 10000"): a fresh coordinator directory with
# two ~100 KB artifacts (v1 on every device, v2 to roll out), `condenser rollout serve`, and
# ceil(N/5000) `condenser fleet-sim` processes (two file descriptors per device; the process
# limit here is 20,000) that enroll and connect N devices over loopback CurveZMQ. Once every
# device has reported its profile, a rollout of v2 (canary N/100, first wave N/20, factor 2)
# is created; the rollout time runs from `rollout create` to the moment the coordinator is
# idle (every device final). Coordinator CPU is counted over that same interval (from
# /proc/PID/stat at create to the total the server reports when it exits); its peak RSS covers
# the whole run. Prints one markdown table row per size.
# Past 10,000 devices (issue 20): FLEET_PER_SIM devices per simulator (default 5000); each
# simulator starts once the devices of all but the previous one have reported (at most two connect at
# once: the server has one ZAP handler and a listen backlog of 100); the server holds one file
# descriptor per device, so the script raises its limit (as root it also raises the hard limit;
# otherwise it stops with an error naming the limit); and past 20,000 devices the devices connect
# from several loopback source addresses (127.0.0.2, .3, ...; one per FLEET_PER_ADDRESS devices,
# default 20,000, given as
# endpoints "tcp://SRC:0;127.0.0.1:PORT" that all reach the one server), since the kernel has only
# about 28,000 ephemeral ports per source address and destination. Extra columns: server RSS once
# every device is connected (VmRSS), the simulators' summed peak RSS and CPU seconds (GNU time,
# whole run), and the coordinator database's size.
set -euo pipefail
bin=$1 mkart=$2 work=$3
sizes=${FLEET_SIZES:-"1000 10000"}
per=${FLEET_PER_SIM:-5000}
addr_every=${FLEET_PER_ADDRESS:-20000}
max_n=0
for n in $sizes; do [ "$n" -gt "$max_n" ] && max_n=$n; done
need=$((max_n + per * 2 + 1024))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
  ulimit -Hn "$need" 2> /dev/null || {
    echo "bench_fleet: $max_n devices need about $need file descriptors, the hard limit is $(ulimit -Hn) (raise it, e.g. as root)" >&2
    exit 1
  }
fi
ulimit -n "$(ulimit -Hn)"
mkdir -p "$work"
"$mkart" "$work/v1.cndq" 1 8 1
"$mkart" "$work/v2.cndq" 1 8 2
size=$(stat -c %s "$work/v2.cndq")
tick=$(getconf CLK_TCK)
cpu_of() { awk -v t="$tick" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
count() { sqlite3 "$1/coordinator.db" "$2" 2>/dev/null || echo 0; }
echo "| devices | sim processes | connect s | rollout s | devices/s | coordinator CPU s (rollout) | coordinator peak RSS MB | healthy | other final states | coordinator RSS MB connected | sims peak RSS MB (sum) | sims CPU s | database MB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in $sizes; do
  d="$work/coord-$n"
  rm -rf "$d" "$work/ep"
  "$bin" rollout init --dir "$d" > /dev/null
  "$bin" rollout publish "$work/v1.cndq" --dir "$d" --model fm --version 1 --manifest-out "$work/v1.man" > /dev/null
  "$bin" rollout publish "$work/v2.cndq" --dir "$d" --model fm --version 2 > /dev/null
  "$bin" rollout serve --dir "$d" --endpoint 'tcp://127.0.0.1:*' --endpoint-file "$work/ep" \
    --until-idle --max-seconds 1800 --stats "$work/serve-$n.json" --quiet 2> "$work/serve-$n.log" &
  sp=$!
  while [ ! -s "$work/ep" ]; do sleep 0.1; done
  ep=$(cat "$work/ep")
  if [ "$n" -gt "$addr_every" ]; then
    list=""
    for a in $(seq 2 $(( (n + addr_every - 1) / addr_every + 1 ))); do
      list="$list${list:+,}tcp://127.0.0.$a:0;${ep#tcp://}"
    done
    ep=$list
  fi
  k=$(( (n + per - 1) / per ))
  t0=$(date +%s.%N)
  pids=()
  for i in $(seq 0 $((k - 1))); do
    if [ "$i" -ge 2 ]; then
      while [ "$(count "$d" 'select count(*) from fleet_device where profile_ms > 0')" -lt $(( n * (i - 1) / k )) ]; do sleep 0.5; done
    fi
    /usr/bin/time -f "%M %U %S" -o "$work/time-$n-$i" "$bin" fleet-sim --devices "$n" --shard "$i/$k" --endpoint "$ep" --coordinator-key "$d/identity.pub" \
      --coordinator-dir "$d" --initial "$work/v1.cndq" --initial-manifest "$work/v1.man" \
      --heartbeat-ms 20000 --duration 1800 --quiet > "$work/sim-$n-$i.log" 2>&1 &
    pids+=($!)
  done
  while [ "$(count "$d" 'select count(*) from fleet_device where profile_ms > 0')" != "$n" ]; do sleep 0.5; done
  t1=$(date +%s.%N)
  c1=$(cpu_of $sp)
  rss1=$(awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$sp/status")
  "$bin" rollout create --dir "$d" --model fm@2 --canary $((n / 100)) --rate $((n / 20)) --factor 2 \
    --device-timeout 300 --abort-failures 5 --abort-min 10 > /dev/null
  wait $sp
  t2=$(date +%s.%N)
  for p in "${pids[@]}"; do wait "$p" || true; done
  c2=$(python3 -c "import json;print(json.load(open('$work/serve-$n.json'))['cpu_seconds'])")
  rss=$(python3 -c "import json;print(round(json.load(open('$work/serve-$n.json'))['peak_rss_kb']/1024))")
  healthy=$(count "$d" "select count(*) from rollout_device where state = 'healthy'")
  sims=$(cat "$work"/time-$n-* | awk '{r += $1; c += $2 + $3} END {printf "%d | %.0f", r / 1024, c}')
  dbmb=$(du -cm "$d"/coordinator.db* | awk 'END {print $1}')
  other=$(count "$d" "select group_concat(state || ' ' || c, ', ') from (select state, count(*) c from rollout_device where state != 'healthy' group by state)")
  awk -v n="$n" -v k="$k" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v c1="$c1" -v c2="$c2" -v rss="$rss" \
      -v h="$healthy" -v o="${other:-none}" -v r1="$rss1" -v sm="$sims" -v db="$dbmb" 'BEGIN {
        printf "| %d | %d | %.1f | %.1f | %.0f | %.1f | %d | %d | %s | %d | %s | %s |\n", n, k, t1 - t0,
               t2 - t1, n / (t2 - t1), c2 - c1, rss, h, o, r1, sm, db }'
done
echo
echo "Artifact: $size bytes (flatten dense(128) relu dense(10), int8), chunks of 64 KiB."
