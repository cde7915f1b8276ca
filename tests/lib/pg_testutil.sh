# tests/lib/pg_testutil.sh: a private PostgreSQL for a test (sourced by bash tests).
#   pg_start DIR: initdb into DIR/data, postgres on a unix socket in DIR/sock only
#     (listen_addresses=''), a database "condenser"; sets PG_URL (libpq URI) and PG_BIN.
#     Returns 77 (ctest SKIP_RETURN_CODE) with a message naming what is missing when Debian's
#     PostgreSQL server binaries are absent.
#   pg_stop: fast shutdown (also safe when pg_start failed half way).
#   pg_sql SQL: runs SQL with psql, unaligned tuples only.
#   pg_test_begin NAME: the frame the rollout tests share: a work directory $w, an array $pids
#     of processes killed at exit (the server stopped, $w removed), fail MSG, wait_for SECONDS
#     CMD..., port (a free TCP port below the kernel's ephemeral range, as in
#     tests/lib/http_testutil.h), and a server started in $w/pg (exits 77 without PostgreSQL).
# PostgreSQL refuses to run as root: as root, the server runs as `nobody` (runuser), and DIR
# is made traversable (0711) for it. Debian's binaries are named by their full path, never
# found through PATH (/usr/local/bin may hold other programs of the same names).
PG_BIN=
PG_DIR=
PG_URL=
pg_find() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && [ -x "$d/psql" ] && PG_BIN=$d
  done
  [ -n "$PG_BIN" ]
}
pg_as() { # runs a command as the server's user
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}
pg_start() {
  PG_DIR=$1
  if ! pg_find; then
    echo "SKIP: Debian's PostgreSQL server (/usr/lib/postgresql/*/bin/{initdb,pg_ctl,postgres,psql}) is not installed" >&2
    return 77
  fi
  mkdir -p "$PG_DIR/data" "$PG_DIR/sock"
  if [ "$(id -u)" = 0 ]; then
    command -v runuser > /dev/null || { echo "SKIP: running as root without runuser" >&2; return 77; }
    chmod 0711 "$PG_DIR" "$(dirname "$PG_DIR")"
    chown nobody "$PG_DIR/data" "$PG_DIR/sock"
  fi
  pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U cnd --auth=trust -E UTF8 --locale=C.UTF-8 \
    > "$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/data/server.log" -w -t 60 \
    -o "-c listen_addresses='' -c unix_socket_directories='$PG_DIR/sock' -c port=5432 -c fsync=on -c max_connections=50" \
    start > "$PG_DIR/pg_ctl.log" 2>&1 || { cat "$PG_DIR/pg_ctl.log" "$PG_DIR/data/server.log" >&2; return 1; }
  "$PG_BIN/psql" -X -q -h "$PG_DIR/sock" -U cnd -d postgres -c 'CREATE DATABASE condenser' > /dev/null ||
    return 1
  PG_URL="postgresql:///condenser?host=$PG_DIR/sock&user=cnd"
}
pg_stop() {
  [ -n "$PG_BIN" ] && [ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ] &&
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop > /dev/null 2>&1
  return 0
}
pg_sql() {
  "$PG_BIN/psql" -X -q -At -h "$PG_DIR/sock" -U cnd -d condenser -c "$1"
}

pg_test_cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pg_stop # before waiting: a child left out of pids must not keep the server running
  kill -9 $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$w"
}
fail() { echo "FAIL: $*" >&2; tail -n 30 "$w"/*.log >&2 || true; exit 1; }
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds, by the clock
  local end=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.1; done
  return 1
}
port() {
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
pg_test_begin() {
  w=$(mktemp -d "/tmp/cnd_$1.XXXXXX")
  pids=()
  trap pg_test_cleanup EXIT
  local rc=0
  pg_start "$w/pg" || rc=$?
  [ $rc = 77 ] && exit 77
  [ $rc = 0 ] || fail "PostgreSQL did not start"
}
