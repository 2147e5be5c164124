#!/usr/bin/env bash
# `make demo`: everything on embedded defaults (SQLite, a file-based broker), one command.
# Ctrl-C stops every process started here. Data lives in var/ and survives a restart.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements.txt

export DJANGO_SETTINGS_MODULE=config.settings.local
export DEMO_HOST="${DEMO_HOST:-127.0.0.1}"
export DEMO_PORT="${DEMO_PORT:-8000}"
export SANDBOX_PORT="${SANDBOX_PORT:-8765}"
export TRACKSTAR_BASE_URL="${TRACKSTAR_BASE_URL:-http://127.0.0.1:$SANDBOX_PORT}"
export TRACKSTAR_API_KEY="${TRACKSTAR_API_KEY:-sandbox-key}"
export TRACKSTAR_WEBHOOK_SECRET="${TRACKSTAR_WEBHOOK_SECRET:-whsec_ZG9ja3NpZGUtc2FuZGJveC13ZWJob29rLXNlY3JldA==}"
export DOCKSIDE_BASE_URL="${DOCKSIDE_BASE_URL:-http://$DEMO_HOST:$DEMO_PORT}"
export TRACKSTAR_SANDBOX_WEBHOOK_URL="${TRACKSTAR_SANDBOX_WEBHOOK_URL:-http://$DEMO_HOST:$DEMO_PORT/webhooks/trackstar/}"
mkdir -p var/log
py=.venv/bin/python

$py manage.py migrate --noinput
$py manage.py seed_demo
$py manage.py collectstatic --noinput -v 0

pids=()
stopping=""
cleanup() {
  stopping=1
  # Ignore further INT/TERM while stopping (make passes its own TERM on): a second signal
  # must not end this function before the kill -9 below, leaving workers behind.
  trap '' INT TERM
  trap - EXIT
  echo; echo "==> Stopping Dockside demo"
  kill "${pids[@]}" 2>/dev/null || true
  # Give them 10 s to finish what they are doing (the worker acks late), then insist.
  for _ in $(seq 50); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.2
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

$py -m sandbox --host 127.0.0.1 --port "$SANDBOX_PORT" --state-file var/sandbox-state.json \
  >var/log/sandbox.log 2>&1 & pids+=($!)
# Two workers, as production runs them (README, "Production"): one for what a person waits
# on, one for syncs, so "Connecting…" never waits behind a long sync.
.venv/bin/celery -A config worker --loglevel INFO --concurrency 2 -n "demo@%h" \
  -Q interactive,webhooks,default >var/log/worker.log 2>&1 & pids+=($!)
.venv/bin/celery -A config worker --loglevel INFO --concurrency 2 -n "demo-sync@%h" \
  -Q sync >var/log/worker-sync.log 2>&1 & pids+=($!)
.venv/bin/celery -A config beat --loglevel INFO >var/log/beat.log 2>&1 & pids+=($!)
$py manage.py runserver --noreload "$DEMO_HOST:$DEMO_PORT" >var/log/web.log 2>&1 & pids+=($!)

for _ in $(seq 100); do
  $py -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
    "http://$DEMO_HOST:$DEMO_PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done

cat <<TXT

  Dockside is running (logs in var/log/, Ctrl-C stops everything)

  Staff admin        http://$DEMO_HOST:$DEMO_PORT/admin/     staff / dockside-staff
  Customer portal    http://$DEMO_HOST:$DEMO_PORT/portal/    acme / dockside-demo
                                                           bright / dockside-demo
  Health             http://$DEMO_HOST:$DEMO_PORT/healthz
  Trackstar sandbox  $TRACKSTAR_BASE_URL  (API key: $TRACKSTAR_API_KEY)

  In the sandbox's Link, any WMS credentials connect; a key or password containing
  "wrong" is refused, as a real WMS would.

TXT
# Stop everything as soon as any one process exits, so a crash is not hidden.
wait -n "${pids[@]}" || true
if [ -z "$stopping" ]; then echo "==> A process exited; see var/log/. Stopping the rest."; fi
