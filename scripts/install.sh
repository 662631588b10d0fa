#!/usr/bin/env bash
# Install what Kerbside needs and is missing: Debian packages, then the Python venv (pinned).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Debian packages: PostgreSQL 15 + PostGIS 3 + pgRouting (the embedded database, road routing); Xvfb, Mesa GL and the X11
# libraries SDL2 loads, so the Kivy field app's screens can be tested headless (tests/mobile).
PKGS=(postgresql-15 postgresql-15-postgis-3 postgresql-15-pgrouting postgresql-contrib gdal-bin wrk
      xvfb xauth libmtdev1 libgl1 libgl1-mesa-dri libegl1 libx11-6 libxext6 libxrender1 libxi6 libxrandr2
      libxcursor1 libxfixes3 libxkbcommon0 libxss1)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser of its own),
# and Node.js + npm, if there is none, for the dashboard's front-end packages (Leaflet).
dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed" || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
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

# The OGC API Features conformance suite (ogctests from PyPI) in a venv of its own: it pins httpx<0.28 and
# pytest<9, older than the API's. tests/server/test_ogc_conformance.py runs it against a live API.
ogc_stamp=".venv-ogctests/.requirements.sha256"
want_ogc="$(sha256sum requirements-ogctests.txt | cut -d' ' -f1)"
if [ ! -x .venv-ogctests/bin/python ] || [ ! -f "$ogc_stamp" ] || [ "$(cat "$ogc_stamp")" != "$want_ogc" ]; then
  say "installing the OGC conformance suite (requirements-ogctests.txt) into .venv-ogctests"
  [ -x .venv-ogctests/bin/python ] || "$PY" -m venv .venv-ogctests \
    || die "could not create a venv. Run: sudo apt-get install -y python3-venv"
  .venv-ogctests/bin/pip install -q --disable-pip-version-check -r requirements-ogctests.txt
  echo "$want_ogc" > "$ogc_stamp"
fi

# Front-end packages (Leaflet) from package-lock.json into node_modules/ (git-ignored; the API serves
# Leaflet's dist files from there). Reinstalled when the lock file changes.
lock_stamp="node_modules/.package-lock.sha256"
want_lock="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -d node_modules/leaflet ] || [ ! -f "$lock_stamp" ] || [ "$(cat "$lock_stamp")" != "$want_lock" ]; then
  say "installing front-end packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null || die "npm ci failed. Run: npm ci"
  echo "$want_lock" > "$lock_stamp"
fi
