#!/usr/bin/env bash
# scripts/bench_fleet_pg.sh BIN MKART WORK: the `fleet-pg` section of scripts/bench: the same
# rollout as bench_fleet.sh (a ~100 KB v2 to N devices on v1, canary N/100, first wave N/20,
# factor 2, 5,000 devices per fleet-sim process) on two set-ups, side by side:
#   sqlite   one `rollout serve`, rollout state in its SQLite database (today's default);
#   pg-4     four `rollout serve` replicas on one PostgreSQL state (a private server started here,
#            tests/lib/pg_testutil.sh), devices given all four endpoints (--failover FLEET_FAILOVER, default 5): each
#            device starts at the replica its name hashes to, and every replica serves its own
#            devices (the first one started also makes the wave decisions).
# "rollout s" runs from `rollout create` to the rollout's completed state; "s per 10k" scales it
# to 10,000 devices; RSS is each replica's peak (VmHWM) at the end, leader first, and "sessions"
# the devices each replica had a session with at the end (its last "sessions:" log line). Sizes:
# FLEET_PG_SIZES (default "10000"). Prints one markdown row per set-up and size.
# Set-ups: FLEET_PG_SETUPS (default "sqlite pg-4"); pg-R runs R replicas. Past 10,000 devices
# (issue 20): FLEET_PER_SIM devices per simulator (default 5000), each started once the devices of
# all but the previous one have reported (at most two simulators connect at once); each server
# holds one file descriptor per device it serves, so a set-up whose largest server would exceed
# the limit (ulimit -Hn; 20,000 on the development VM, which cannot raise it) is refused before it
# starts. Extra columns: the largest replica's RSS once every device is connected (VmRSS), the
# simulators' summed peak RSS and CPU seconds (GNU time, whole run), and the state's size (the
# PostgreSQL tables with indexes, or the SQLite file).
# Each simulator connects from its own loopback source address (127.0.0.2, .3, ...: libzmq's
# "tcp://SRC:0;127.0.0.1:PORT"), so no (source, destination) pair runs out of the kernel's
# ~28,000 ephemeral ports (net.ipv4.ip_local_port_range) however many devices one replica gets.
# FLEET_NGINX=1: artifact bytes from an HTTP cache: `rollout export-cache` fills a directory a
# private nginx serves on loopback, every replica names it (--artifact-url) and the simulators
# fetch there (fleet-sim --http); the replicas then send control messages only. The last column
# gives the requests nginx answered (206, partial content) and the chunks the replicas sent.
set -euo pipefail
bin=$1 mkart=$2 work=$3
sizes=${FLEET_PG_SIZES:-"10000"}
per=${FLEET_PER_SIM:-5000}
failover=${FLEET_FAILOVER:-5} # fleet-sim --failover: seconds without a session before the next endpoint
ulimit -n "$(ulimit -Hn)"
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/tests/lib/pg_testutil.sh"
mkdir -p "$work"
work=$(cd "$work" && pwd)
pids=()
nginx_pid=
cleanup() { for p in "${pids[@]}" $nginx_pid; do kill -9 "$p" 2>/dev/null || true; done; pg_stop; kill -9 $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
"$mkart" "$work/v1.cndq" 1 8 1
"$mkart" "$work/v2.cndq" 1 8 2
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hwm() { awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo dead; }
rm -rf "$work/pg"
pg_start "$work/pg" || { echo "bench_fleet_pg: PostgreSQL did not start" >&2; exit 1; }
art_url=
if [ "${FLEET_NGINX:-0}" = 1 ]; then
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  np=$(port)
  rm -rf "$work/nginx" "$work/www"
  mkdir -p "$work/nginx/tmp" "$work/www/artifacts"
  cat > "$work/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 4096;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 2048; }
http {
  access_log $work/nginx/access.log;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  default_type application/octet-stream;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$np; root $work/www; }
}
CONF
  "$nginx" -e "$work/nginx/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
  nginx_pid=$!
  art_url="http://127.0.0.1:$np/artifacts"
  sleep 1
fi
echo "| set-up | devices | replicas | connect s | rollout s | s per 10k devices | replica peak RSS MB (leader first) | sessions per replica | healthy | largest replica RSS MB connected | sims peak RSS MB (sum) | sims CPU s | state MB | nginx 206s / chunks sent |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in $sizes; do
  for setup in ${FLEET_PG_SETUPS:-sqlite pg-4}; do
    d="$work/coord-$setup-$n"
    rm -rf "$d"
    if [ $setup = sqlite ]; then url=sqlite: reps=1; else url=$PG_URL reps=${setup#pg-}; fi
    if [ "$(ulimit -Hn)" != unlimited ] && [ $(( n * 11 / 10 / reps + 1024 )) -gt "$(ulimit -Hn)" ]; then
      echo "bench_fleet_pg: $setup at $n devices: each server would hold about $(( n / reps )) connections, the file descriptor limit is $(ulimit -Hn); use more replicas (pg-R)" >&2
      continue
    fi
    if [ $setup != sqlite ]; then
      pg_sql "SET client_min_messages = warning; DROP TABLE IF EXISTS fleet_device, rollout, rollout_manifest, rollout_device, rollout_latency, rollout_presence, condenser_schema; DROP SEQUENCE IF EXISTS rollout_device_chg" > /dev/null
    fi
    q() { if [ $setup = sqlite ]; then sqlite3 "$d/coordinator.db" "$1" 2>/dev/null || echo 0; else pg_sql "$1" 2>/dev/null || echo 0; fi; }
    "$bin" rollout init --dir "$d" > /dev/null
    "$bin" rollout publish "$work/v1.cndq" --dir "$d" --model fm --version 1 --manifest-out "$work/v1.man" > /dev/null
    "$bin" rollout publish "$work/v2.cndq" --dir "$d" --model fm --version 2 > /dev/null
    cache=() http=()
    if [ -n "$art_url" ]; then
      "$bin" rollout export-cache --dir "$d" --out "$work/www/artifacts" > /dev/null
      : > "$work/nginx/access.log"
      cache=(--artifact-url "$art_url") http=(--http)
    fi
    eps=() spids=()
    for r in $(seq 1 $reps); do
      ep="tcp://127.0.0.1:$(port)"
      eps+=("$ep")
      "$bin" rollout serve --dir "$d" --state "$url" --endpoint "$ep" "${cache[@]}" \
        --stats "$work/stats-$setup-$n-$r.json" 2> "$work/serve-$setup-$n-$r.log" &
      spids+=($!)
      pids+=($!)
      sleep 1 # the first one started leads
    done
    list=$(IFS=,; echo "${eps[*]}")
    k=$(( (n + per - 1) / per ))
    t0=$(date +%s.%N)
    sims=()
    rm -f "$work"/time-$setup-$n-* "$work"/stats-$setup-$n-*
    for i in $(seq 0 $((k - 1))); do
      if [ "$i" -ge 2 ]; then
        while [ "$(q 'select count(*) from fleet_device where profile_ms > 0')" -lt $(( n * (i - 1) / k )) ]; do sleep 0.5; done
      fi
      src="127.0.0.$((2 + i))"
      slist=$(for e in "${eps[@]}"; do printf '%s' "${sep:-}tcp://$src:0;${e#tcp://}"; sep=,; done; sep=)
      /usr/bin/time -f "%M %U %S" -o "$work/time-$setup-$n-$i" "$bin" fleet-sim --devices "$n" --shard "$i/$k" --endpoint "$slist" --failover "$failover" "${http[@]}" \
        --coordinator-key "$d/identity.pub" --coordinator-dir "$d" --state "$url" \
        --initial "$work/v1.cndq" --initial-manifest "$work/v1.man" --heartbeat-ms 20000 \
        --duration 1800 --quiet > "$work/sim-$setup-$n-$i.log" 2>&1 &
      sims+=($!)
      pids+=($!)
    done
    while [ "$(q 'select count(*) from fleet_device where profile_ms > 0')" != "$n" ]; do sleep 0.5; done
    t1=$(date +%s.%N)
    rss1=0
    for p in "${spids[@]}"; do
      r=$(awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$p/status" 2>/dev/null || echo 0)
      [ "$r" -gt "$rss1" ] && rss1=$r
    done
    "$bin" rollout create --dir "$d" --state "$url" --model fm@2 --canary $((n / 100)) --rate $((n / 20)) \
      --factor 2 --device-timeout 300 --abort-failures 5 --abort-min 10 > /dev/null
    while [ "$(q 'select state from rollout where id = 1')" != completed ]; do
      [ "$(q 'select state from rollout where id = 1')" = aborted ] && break
      sleep 0.2
    done
    t2=$(date +%s.%N)
    rss=""
    for p in "${spids[@]}"; do rss="$rss${rss:+ / }$(hwm "$p")"; done
    sess=""
    for r in $(seq 1 $reps); do
      k=$({ grep "sessions: " "$work/serve-$setup-$n-$r.log" || true; } | tail -1 | sed 's/.*sessions: \([0-9]*\) devices.*/\1/')
      sess="$sess${sess:+ / }${k:--}"
    done
    healthy=$(q "select count(*) from rollout_device where state = 'healthy'")
    n206=-
    [ -n "$art_url" ] && n206=$(grep -c '" 206 ' "$work/nginx/access.log" || true)
    if [ $setup = sqlite ]; then
      db=$(du -cm "$d"/coordinator.db* | awk 'END {print $1}')
    else
      db=$(q "select round(sum(pg_total_relation_size(c.oid)) / 1048576.0) from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and c.relkind = 'r'")
    fi
    for p in "${sims[@]}"; do wait "$p" || true; done
    simc=$(cat "$work"/time-$setup-$n-* | awk '{r += $1; c += $2 + $3} END {printf "%d | %.0f", r / 1024, c}')
    for p in "${spids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    pids=()
    chunks=$(cat "$work"/stats-$setup-$n-*.json 2>/dev/null | python3 -c 'import json, sys; print(sum(json.loads(l)["chunks_sent"] for l in sys.stdin if l.strip()))' || echo "?")
    awk -v s="$setup" -v n="$n" -v r="$reps" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v rss="$rss" -v ss="$sess" -v h="$healthy" \
        -v r1="$rss1" -v sm="$simc" -v db="$db" -v ng="$n206 / $chunks" 'BEGIN {
      printf "| %s | %d | %d | %.1f | %.1f | %.1f | %s | %s | %d | %d | %s | %s | %s |\n", s, n, r, t1 - t0, t2 - t1,
             (t2 - t1) * 10000 / n, rss, ss, h, r1, sm, db, ng }'
  done
done
