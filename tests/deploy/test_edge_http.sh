#!/usr/bin/env bash
# test_edge_http.sh BIN MKART [hooks]: artifacts from an HTTP cache (issue 20). A real nginx on loopback
# serves the directory `rollout export-cache` fills; `rollout serve --artifact-url` names it in
# its offers; two `condenser edge run` devices fetch the bytes there with range requests.
#   1. a good cache: both devices run v2 and the rollout server sent no chunk (metrics), nginx
#      answered range requests (206) for v2's digest;
#   2. a poisoned cache (v3's file replaced by other bytes of the same size): no device installs
#      them; each falls back to chunks over CurveZMQ and runs the real v3;
#   3. a cache without the artifact (404 for v4): the same fallback, the device says why;
#   4. export-cache repairs the poisoned file and keeps the good ones; a bad --artifact-url is
#      refused by rollout serve with the reason;
#   5. (builds with CND_TEST_HOOKS: "hooks") device A killed right after its third range from the
#      cache is recorded resumes after a restart with only the missing ranges, still from the
#      cache (no chunk sent), and runs v5.
set -euo pipefail
command -v nginx > /dev/null || command -v /usr/sbin/nginx > /dev/null || exit 77
command -v sqlite3 > /dev/null && command -v python3 > /dev/null || exit 77
nginx=$(command -v nginx || echo /usr/sbin/nginx)
bin=$1 mkart=$2 hooks=${3:-}
w=$(mktemp -d /tmp/cnd_edge_http.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$w"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -n 20 "$w"/*.log "$w"/nginx/*.log >&2 || true; exit 1; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds, by the clock (slow polls under load)
  local end=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.2; done
  return 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# nginx as the cache: one process, everything under $w.
np=$(port)
mkdir -p "$w/nginx/tmp" "$w/www/artifacts"
cat > "$w/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $w/nginx/nginx.pid;
error_log $w/nginx/error.log;
events { worker_connections 64; }
http {
  access_log $w/nginx/access.log;
  client_body_temp_path $w/nginx/tmp/body;
  proxy_temp_path $w/nginx/tmp/proxy;
  fastcgi_temp_path $w/nginx/tmp/fastcgi;
  uwsgi_temp_path $w/nginx/tmp/uwsgi;
  scgi_temp_path $w/nginx/tmp/scgi;
  default_type application/octet-stream;
  server { listen 127.0.0.1:$np; root $w/www; }
}
CONF
"$nginx" -e "$w/nginx/error.log" -p "$w/nginx" -c "$w/nginx/nginx.conf" &
pids+=($!)
nginx_up() { # nginx answers (a 404 for a file that is not there)
  python3 - "$np" <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen("http://127.0.0.1:%s/nothing" % sys.argv[1], timeout=2)
except urllib.error.HTTPError as e:
    sys.exit(0 if e.code == 404 else 1)
except OSError:
    sys.exit(1)
sys.exit(1)
PY
}
wait_for 10 nginx_up || fail "nginx did not start"
url="http://127.0.0.1:$np/artifacts"

for v in 1 2 3 4 5; do "$mkart" "$w/v$v.cndq" 1 8 $v; done
dg() { sha256sum "$w/v$1.cndq" | cut -d' ' -f1; }
c="$w/coord"
"$bin" rollout init --dir "$c" > /dev/null
"$bin" rollout publish "$w/v1.cndq" --dir "$c" --model fm --version 1 --manifest-out "$w/v1.man" > /dev/null
"$bin" rollout publish "$w/v2.cndq" --dir "$c" --model fm --version 2 > /dev/null
"$bin" rollout export-cache --dir "$c" --out "$w/www/artifacts" --json > "$w/exp1.json"
[ "$(json written < "$w/exp1.json")" = 2 ] || fail "export-cache: $(cat "$w/exp1.json")"
cmp -s "$w/www/artifacts/$(dg 2)" "$w/v2.cndq" || fail "export-cache wrote other bytes for v2"

# A bad cache URL is refused before anything starts.
if "$bin" rollout serve --dir "$c" --endpoint 'tcp://127.0.0.1:*' --artifact-url "ftp://x/a" \
     --max-seconds 5 > "$w/badurl.log" 2>&1; then fail "rollout serve took an ftp:// cache"; fi
grep -q "http:// or https://" "$w/badurl.log" || fail "bad URL reason: $(cat "$w/badurl.log")"

mp=$(port)
"$bin" rollout serve --dir "$c" --endpoint 'tcp://127.0.0.1:*' --endpoint-file "$w/ep" \
  --heartbeat-ms 1000 --artifact-url "$url" --metrics "127.0.0.1:$mp" 2> "$w/serve.log" &
pids+=($!)
wait_for 10 test -s "$w/ep" || fail "no endpoint"
ep=$(cat "$w/ep")
chunks_sent() {
  python3 - "$mp" <<'PY'
import sys, urllib.request
t = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1]).read().decode()
print(int(float([l.split()[1] for l in t.splitlines() if l.startswith("condenser_rollout_chunks_sent_total")][0])))
PY
}
for dev in a b; do
  "$bin" edge init --dir "$w/$dev" --name "dev-$dev" --endpoint "$ep" --coordinator-key "$c/identity.pub" \
    --class gw --cpu x86-64 --model fm --labels "site=north,ward=$dev" > /dev/null
  "$bin" rollout enroll "dev-$dev" --key "$w/$dev/identity.pub" --dir "$c" > /dev/null
  "$bin" edge install --dir "$w/$dev" "$w/v1.cndq" --manifest "$w/v1.man" > /dev/null
  "$bin" edge run --dir "$w/$dev" 2> "$w/$dev.log" &
  pids+=($!)
  eval "pid_$dev=$!"
done
profiles() { [ "$(sqlite3 "$c/coordinator.db" 'select count(*) from fleet_device where profile_ms > 0')" = 2 ]; }
wait_for 20 profiles || fail "devices did not report"
completed() { [ "$(sqlite3 "$c/coordinator.db" "select state from rollout where id = $1")" = completed ]; }
on() { # on V: both devices run version V
  for dev in a b; do
    [ "$("$bin" edge status --dir "$w/$dev" --json | json digest)" = "$(dg "$1")" ] || return 1
  done
}
rollout() { # rollout V ID
  "$bin" rollout create --dir "$c" --model "fm@$1" --canary 1 --chunk 16384 --device-timeout 60 > /dev/null
  wait_for 60 completed "$2" || fail "rollout $2 (v$1) did not complete: $(sqlite3 "$c/coordinator.db" "select device, state, reason from rollout_device where rollout = $2")"
  wait_for 10 on "$1" || fail "devices not on v$1"
}

# 1. A good cache: the bytes come from nginx, none as chunks.
rollout 2 1
sleep 1.5 # the metrics endpoint takes a snapshot at most once a second
[ "$(chunks_sent)" = 0 ] || fail "the rollout server sent $(chunks_sent) chunks though the cache was good"
grep -q "GET /artifacts/$(dg 2) HTTP/1.1\" 206" "$w/nginx/access.log" ||
  fail "nginx served no range of v2: $(cat "$w/nginx/access.log")"
if grep -q "artifact cache not used" "$w/a.log" "$w/b.log"; then fail "a device fell back with a good cache"; fi

# 2. A poisoned cache: v3's file holds other bytes of the same size.
"$bin" rollout publish "$w/v3.cndq" --dir "$c" --model fm --version 3 > /dev/null
"$bin" rollout export-cache --dir "$c" --out "$w/www/artifacts" > /dev/null
size=$(stat -c %s "$w/v3.cndq")
head -c "$size" /dev/urandom > "$w/www/artifacts/$(dg 3)"
rollout 3 2
sent_more() { [ "$(chunks_sent)" -gt "$1" ]; } # (metrics: a snapshot at most once a second)
wait_for 5 sent_more 0 || fail "no chunk was sent after the poisoned cache"
for dev in a b; do
  grep -q "artifact cache not used for this download: the cache's bytes do not match the signed digest" "$w/$dev.log" ||
    fail "$dev did not say the cache's bytes were wrong: $(cat "$w/$dev.log")"
done
grep -q "GET /artifacts/$(dg 3) HTTP/1.1\" 206" "$w/nginx/access.log" || fail "the devices did not try the cache for v3"
sleep 1.5
before=$(chunks_sent)

# 3. A cache without the artifact: 404, the same fallback.
"$bin" rollout publish "$w/v4.cndq" --dir "$c" --model fm --version 4 > /dev/null
rollout 4 3
wait_for 5 sent_more "$before" || fail "no chunk was sent for v4"
grep -q "HTTP 404" "$w/a.log" || fail "device a did not name the 404: $(cat "$w/a.log")"

# 4. export-cache replaces the poisoned file, writes v4, keeps v1 and v2.
"$bin" rollout export-cache --dir "$c" --out "$w/www/artifacts" --json > "$w/exp2.json"
python3 - "$w/exp2.json" <<'PY' || fail "export-cache repair: $(cat "$w/exp2.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r == {"artifacts": 4, "written": 2, "replaced": 1, "kept": 2, "bytes_written": r["bytes_written"]}, r
PY
cmp -s "$w/www/artifacts/$(dg 3)" "$w/v3.cndq" || fail "export-cache did not repair v3"
if "$bin" rollout export-cache --dir "$c" --out "$w/none" > "$w/nodir.log" 2>&1; then fail "export-cache to a missing directory"; fi
grep -q "not a directory" "$w/nodir.log" || fail "missing dir reason: $(cat "$w/nodir.log")"
# 5. A kill in the middle of a download from the cache: the restart resumes from the cache.
if [ "$hooks" = hooks ]; then
  "$bin" rollout publish "$w/v5.cndq" --dir "$c" --model fm --version 5 > /dev/null
  "$bin" rollout export-cache --dir "$c" --out "$w/www/artifacts" > /dev/null
  kill "$pid_a"; wait "$pid_a" 2>/dev/null || true
  # Steps: reserve 1, state 4, then 6 per range (write, fsync, the 4 of the state record).
  CND_EDGE_CRASH_AT=23 CND_EDGE_CRASH_TRACE=1 "$bin" edge run --dir "$w/a" 2> "$w/a1.log" &
  pa=$!
  sleep 1.5
  sent=$(chunks_sent)
  "$bin" rollout create --dir "$c" --model fm@5 --canary 2 --chunk 16384 --device-timeout 120 > /dev/null
  set +e
  wait "$pa"
  code=$?
  set -e
  [ "$code" = 86 ] || fail "device A was expected to die at the crash step (exit $code)"
  held=$(grep -c 'chunk written' "$w/a1.log" || true)
  [ "$held" = 3 ] || fail "device A wrote $held ranges before the crash, expected 3"
  CND_EDGE_CRASH_TRACE=1 "$bin" edge run --dir "$w/a" 2> "$w/a2.log" &
  pids+=($!)
  wait_for 90 completed 4 || fail "rollout 4 (v5) did not complete: $(sqlite3 "$c/coordinator.db" "select device, state, reason from rollout_device where rollout = 4")"
  wait_for 10 on 5 || fail "devices not on v5"
  total=$(( ($(stat -c %s "$w/v5.cndq") + 16383) / 16384 ))
  again=$(grep -c 'chunk written' "$w/a2.log" || true)
  [ "$again" = $((total - 3)) ] || fail "device A wrote $again ranges after restarting, expected the $((total - 3)) missing ones"
  sleep 1.5
  [ "$(chunks_sent)" = "$sent" ] || fail "chunks were sent for v5 though the cache was good"
fi
echo "test_edge_http: ok"
