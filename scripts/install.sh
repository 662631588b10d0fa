#!/usr/bin/env bash
# Install what Kerbside needs and is missing: Debian packages, then the Python venv (pinned).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Debian packages: PostgreSQL 15 + PostGIS 3 (the embedded database).
PKGS=(postgresql-15 postgresql-15-postgis-3 postgresql-contrib)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; 
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo";
  else die "missing system packages: ${missing[*]}. Run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"; fi
  say "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq || die "apt-get update failed. Run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install failed. Run: sudo apt-get install -y ${missing[*]}"
  # Debian starts its own cluster on 5432; Kerbside runs its own under .data/, so leave it alone.
fi

# Python virtual environment with exact pins.
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating the Python virtual environment in .venv"
  "$PY" -m venv .venv || die "could not create a venv. Run: sudo apt-get install -y python3-venv"
fi
stamp=".venv/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing pinned Python packages (requirements.txt)"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi
