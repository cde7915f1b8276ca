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
set -euo pipefail
bin=$1 mkart=$2 work=$3
sizes=${FLEET_SIZES:-"1000 10000"}
mkdir -p "$work"
"$mkart" "$work/v1.cndq" 1 8 1
"$mkart" "$work/v2.cndq" 1 8 2
size=$(stat -c %s "$work/v2.cndq")
tick=$(getconf CLK_TCK)
cpu_of() { awk -v t="$tick" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
count() { sqlite3 "$1/coordinator.db" "$2" 2>/dev/null || echo 0; }
echo "| devices | sim processes | connect s | rollout s | devices/s | coordinator CPU s (rollout) | coordinator peak RSS MB | healthy | other final states |"
echo "|---|---|---|---|---|---|---|---|---|"
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
  k=$(( (n + 4999) / 5000 ))
  t0=$(date +%s.%N)
  pids=()
  for i in $(seq 0 $((k - 1))); do
    "$bin" fleet-sim --devices "$n" --shard "$i/$k" --endpoint "$ep" --coordinator-key "$d/identity.pub" \
      --coordinator-dir "$d" --initial "$work/v1.cndq" --initial-manifest "$work/v1.man" \
      --heartbeat-ms 20000 --duration 1800 --quiet > "$work/sim-$n-$i.log" 2>&1 &
    pids+=($!)
  done
  while [ "$(count "$d" 'select count(*) from fleet_device where profile_ms > 0')" != "$n" ]; do sleep 0.5; done
  t1=$(date +%s.%N)
  c1=$(cpu_of $sp)
  "$bin" rollout create --dir "$d" --model fm@2 --canary $((n / 100)) --rate $((n / 20)) --factor 2 \
    --device-timeout 300 --abort-failures 5 --abort-min 10 > /dev/null
  wait $sp
  t2=$(date +%s.%N)
  for p in "${pids[@]}"; do wait "$p" || true; done
  c2=$(python3 -c "import json;print(json.load(open('$work/serve-$n.json'))['cpu_seconds'])")
  rss=$(python3 -c "import json;print(round(json.load(open('$work/serve-$n.json'))['peak_rss_kb']/1024))")
  healthy=$(count "$d" "select count(*) from rollout_device where state = 'healthy'")
  other=$(count "$d" "select group_concat(state || ' ' || c, ', ') from (select state, count(*) c from rollout_device where state != 'healthy' group by state)")
  awk -v n="$n" -v k="$k" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v c1="$c1" -v c2="$c2" -v rss="$rss" \
      -v h="$healthy" -v o="${other:-none}" 'BEGIN {
        printf "| %d | %d | %.1f | %.1f | %.0f | %.1f | %d | %d | %s |\n", n, k, t1 - t0, t2 - t1,
               n / (t2 - t1), c2 - c1, rss, h, o }'
done
echo
echo "Artifact: $size bytes (flatten dense(128) relu dense(10), int8), chunks of 64 KiB."
