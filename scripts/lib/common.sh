# Shared shell settings for the project's scripts (sourced, not executed).
# Defines: ROOT, PG_CONFIG, PG_BIN, MODEL_DIR, as_root, as_postgres.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PG_BIN=$(dirname "$PG_CONFIG")
MODEL_DIR=${STEADYTEXT_MODEL_DIR:-$HOME/.cache/steadytext/models}
export PATH="$HOME/.cargo/bin:$PATH"

# Run a command as root (directly when we are root, else through sudo).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Run a command as the postgres OS user (PostgreSQL refuses to run as root).
as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else as_root runuser -u postgres -- "$@"; fi
}
