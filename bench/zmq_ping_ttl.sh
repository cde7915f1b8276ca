#!/usr/bin/env bash
# zmq_ping_ttl.sh [TTL_MS...]: the server CPU that 10,000 devices' ZMTP PINGs cost with and
# without a TTL (bench/zmq_ping_ttl.c; docs/benchmarks.md). For each TTL (default "6000 0"): one
# server, 4 client processes of 2,500 DEALERs from their own loopback source addresses, each
# pinging every 2 s and sending an application message every 10 s; 40 s to connect, then the
# server's user+system CPU over 60 s. Needs about 10,100 descriptors for the server.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
d=$(mktemp -d)
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$d"' EXIT
gcc -O2 -o "$d/zmq_ping_ttl" "$here/zmq_ping_ttl.c" -lzmq
ulimit -n "$(ulimit -Hn)"
hz=$(getconf CLK_TCK)
for ttl in ${@:-6000 0}; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$d/zmq_ping_ttl" server "tcp://127.0.0.1:$port" & sp=$!
  pids=($sp)
  sleep 0.5
  for i in 0 1 2 3; do
    "$d/zmq_ping_ttl" client "tcp://127.0.0.$((2 + i)):0;127.0.0.1:$port" 2500 "$ttl" 10000 &
    pids+=($!)
  done
  sleep 40
  est=$(ss -tn state established "( sport = :$port )" | tail -n +2 | wc -l)
  a=$(awk '{print $14 + $15}' "/proc/$sp/stat")
  sleep 60
  b=$(awk '{print $14 + $15}' "/proc/$sp/stat")
  echo "TTL $ttl ms: $est connections, server CPU $(awk -v d=$((b - a)) -v hz="$hz" 'BEGIN {printf "%.1f%% of a core", 100 * d / hz / 60}') over 60 s"
  kill -9 "${pids[@]}"
  wait 2>/dev/null || true
done
