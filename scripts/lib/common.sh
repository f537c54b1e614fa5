# Shared shell settings for the project's scripts (sourced, not executed).
# Defines: ROOT, PG_CONFIG, PG_BIN, MODEL_DIR, as_root, as_postgres, wait_ready.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PG_BIN=$(dirname "$PG_CONFIG")
# The rule of steadytext_api::model_dir (crates/steadytext-api/src/model_dir.rs).
MODEL_DIR=${STEADYTEXT_MODEL_DIR:-${HOME:?no model directory: set STEADYTEXT_MODEL_DIR (or HOME)}/.cache/steadytext/models}
export PATH="$HOME/.cargo/bin:$PATH"

# Run a command as root (directly when we are root, else through sudo).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Run a command as the postgres OS user (PostgreSQL refuses to run as root).
as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else as_root runuser -u postgres -- "$@"; fi
}

# Waits (up to 180 s) for a `steadytext serve|worker --ready-file FILE` to become ready, failing
# early if process PID exits; then prints the ready file's string field FIELD (e.g. url).
# Usage: wait_ready FILE PID LOG FIELD. On failure prints LOG to stderr and returns 1.
wait_ready() {
  local file=$1 pid=$2 log=$3 field=$4
  local deadline=$((SECONDS + 180))
  until [ -s "$file" ]; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS > deadline)); then
      echo "steadytext did not become ready; its log:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  # the file is one flat JSON object written whole, e.g. {"url":"http://127.0.0.1:8765",...}
  sed -n "s/.*\"$field\":\"\\([^\"]*\\)\".*/\\1/p" "$file"
}
