#!/usr/bin/env bash
# `make test`: install what the suite needs, make sure it has PostgreSQL and Redis, run it.
# DATABASE_URL / REDIS_URL, when set, are used as they are; otherwise throwaway servers
# are started here and stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements-dev.txt
scripts/system-deps.sh
source scripts/services.sh
if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then
  services_start
  trap services_stop EXIT
fi
redact() { sed -E 's#//([^:@/]*):[^@/]*@#//\1:***@#'; }
echo "==> Testing against DATABASE_URL=$(redact <<<"$DATABASE_URL") REDIS_URL=$(redact <<<"$REDIS_URL")"
export DJANGO_SETTINGS_MODULE=config.settings.test
.venv/bin/pytest "$@"
