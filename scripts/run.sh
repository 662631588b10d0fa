#!/usr/bin/env bash
# make run: database, schema, data, demo tokens, then the API and the worker in the foreground.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

PORT="${KERBSIDE_PORT:-8000}"
HOST="${KERBSIDE_HOST:-127.0.0.1}"
PY=.venv/bin/python

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  die "port $PORT is already in use; stop what is using it or set KERBSIDE_PORT"
fi

scripts/pg.sh start
say "applying migrations, importing GIS data, seeding demo data"
$PY -m server.cli setup
$PY -m server.cli demo-tokens --out .data/demo-tokens.env

pids=()
cleanup() {
  trap - INT TERM EXIT
  say "stopping the API and the worker"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

# A contractor simulator per demo contractor, acting as that contractor (its secrets come from the DB).
for contractor in street-lighting green-spaces; do
  env_file=".data/sim-$contractor.env"
  (umask 077; $PY -m server.cli simulator-env "$contractor" > "$env_file")
  sim_port=$(sed -n 's/^SIM_PORT=//p' "$env_file")
  if (exec 3<>"/dev/tcp/127.0.0.1/$sim_port") 2>/dev/null; then
    die "port $sim_port (the $contractor simulator) is already in use"
  fi
  say "starting the contractor simulator for $contractor on http://127.0.0.1:$sim_port"
  (set -a; . "./$env_file"; exec $PY -m contractors.simulator --port "$sim_port") &
  pids+=($!)
done

# The GOV.UK Notify simulator, acting as our Notify service (the key and callback token come from settings).
(umask 077; $PY -m server.cli notify-simulator-env > .data/notify-sim.env)
notify_port=$(sed -n 's/^NOTIFY_SIM_PORT=//p' .data/notify-sim.env)
if (exec 3<>"/dev/tcp/127.0.0.1/$notify_port") 2>/dev/null; then
  die "port $notify_port (the Notify simulator) is already in use"
fi
say "starting the Notify simulator on http://127.0.0.1:$notify_port"
(set -a; . ./.data/notify-sim.env; exec $PY -m notify_simulator --log-file .data/notify-sim-messages.jsonl) &
pids+=($!)

say "starting the worker"
$PY -m server.worker &
pids+=($!)
say "starting the API on http://$HOST:$PORT"
$PY -m uvicorn server.main:create_app --factory --host "$HOST" --port "$PORT" --log-level warning &
pids+=($!)

for _ in $(seq 1 60); do
  if $PY - "$HOST" "$PORT" <<'PY' 2>/dev/null; then break; fi
import sys, httpx
httpx.get(f"http://{sys.argv[1]}:{sys.argv[2]}/healthz", timeout=1).raise_for_status()
PY
  sleep 0.5
done
cat >&2 <<MSG

  Kerbside is running.
    API       http://$HOST:$PORT/api/v1
    Docs      http://$HOST:$PORT/docs
    Health    http://$HOST:$PORT/healthz
    Contractor simulators  street-lighting http://127.0.0.1:$(sed -n 's/^SIM_PORT=//p' .data/sim-street-lighting.env)/_control/state
                           green-spaces    http://127.0.0.1:$(sed -n 's/^SIM_PORT=//p' .data/sim-green-spaces.env)/_control/state
    Notify simulator       http://127.0.0.1:$notify_port/_control/messages (emails and texts sent)
  Demo tokens are in the table above (and in .data/demo-tokens.env).
  Ctrl-C stops the API and the worker; 'make stop' stops the database.

MSG
# Stay in the foreground until Ctrl-C/SIGTERM, until either process dies, or until our parent
# (make) is gone: make does not pass SIGTERM on to the recipe, so we watch for it ourselves.
parent=$PPID
while kill -0 "$parent" 2>/dev/null; do
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { say "a Kerbside process exited"; exit 1; }
  done
  sleep 1
done
