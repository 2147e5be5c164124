#!/usr/bin/env bash
# Throwaway PostgreSQL 15 and Redis servers for tests and CI. Source this file, then:
#   services_start   exports DATABASE_URL and REDIS_URL
#   services_stop    stops both and removes their data
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_as_pg() {
  # PostgreSQL refuses to run as root.
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

services_start() {
  SERVICES_DIR="$(mktemp -d /tmp/dockside-services.XXXXXX)"
  export SERVICES_DIR
  local pg_port redis_port
  pg_port="$(_free_port)"
  redis_port="$(_free_port)"
  mkdir -p "$SERVICES_DIR/pg"
  [ "$(id -u)" -eq 0 ] && chown -R postgres "$SERVICES_DIR/pg" && chmod 755 "$SERVICES_DIR"
  _as_pg "$PG_BIN/initdb" -D "$SERVICES_DIR/pg/data" -U postgres -A trust >/dev/null
  _as_pg "$PG_BIN/pg_ctl" -D "$SERVICES_DIR/pg/data" -l "$SERVICES_DIR/pg/log" -w \
    -o "-p $pg_port -k $SERVICES_DIR/pg -c listen_addresses=127.0.0.1 -c fsync=off \
        -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --dir "$SERVICES_DIR" --pidfile "$SERVICES_DIR/redis.pid" \
    --logfile "$SERVICES_DIR/redis.log"
  for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/dockside"
  export REDIS_URL="redis://127.0.0.1:$redis_port/0"
  _as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres dockside
  echo "==> Started PostgreSQL on :$pg_port and Redis on :$redis_port ($SERVICES_DIR)"
}

services_stop() {
  [ -n "${SERVICES_DIR:-}" ] || return 0
  if [ -f "$SERVICES_DIR/redis.pid" ]; then kill "$(cat "$SERVICES_DIR/redis.pid")" 2>/dev/null || true; fi
  _as_pg "$PG_BIN/pg_ctl" -D "$SERVICES_DIR/pg/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$SERVICES_DIR"
  echo "==> Stopped the throwaway PostgreSQL and Redis"
}
