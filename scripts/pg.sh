#!/usr/bin/env bash
# The embedded PostgreSQL + PostGIS cluster under .data/pg, run as an unprivileged user.
#   scripts/pg.sh start          initialise (once) and start; writes .data/local.env
#   scripts/pg.sh stop           stop the cluster
#   scripts/pg.sh createdb NAME  create a fresh database NAME (dropping one of that name)
#   scripts/pg.sh dropdb NAME    drop database NAME
#   scripts/pg.sh url NAME       print the SQLAlchemy URL of database NAME
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$ROOT/.data"
PGDATA="$DATA/pg"
SOCK="$DATA/run"
PORT="${KERBSIDE_PG_PORT:-54329}"
PGBIN="${KERBSIDE_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
PWFILE="$DATA/db_password"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

[ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL server binaries not found; run 'make install' first"

# PostgreSQL refuses to run as root: use the postgres system user then.
if [ "$(id -u)" = 0 ]; then
  RUNAS=postgres
  as_pg() { runuser -u "$RUNAS" -- "$@"; }
else
  RUNAS="$(id -un)"
  as_pg() { "$@"; }
fi

ensure_traversable() {
  # The postgres user must be able to reach .data; grant search (x) on parents that lack it.
  local d="$DATA"
  if [ "$RUNAS" != "$(id -un)" ] && ! as_pg test -x "$DATA"; then
    while [ "$d" != "/" ]; do
      d="$(dirname "$d")"
      if ! as_pg test -x "$d"; then
        say "granting the $RUNAS user search access to $d (needed to reach .data/)"
        chmod o+x "$d"
      fi
    done
  fi
}

psql_admin() { as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres "$@"; }

url_for() {
  printf 'postgresql+psycopg://kerbside:%s@127.0.0.1:%s/%s\n' "$(cat "$PWFILE")" "$PORT" "$1"
}

start() {
  mkdir -p "$DATA" "$SOCK"
  chmod 755 "$DATA"
  if [ "$RUNAS" != "$(id -un)" ]; then chown "$RUNAS" "$SOCK"; fi
  ensure_traversable
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    say "initialising a PostgreSQL cluster in .data/pg (port $PORT, loopback only)"
    mkdir -p "$PGDATA"
    [ "$RUNAS" != "$(id -un)" ] && chown "$RUNAS" "$PGDATA"
    chmod 700 "$PGDATA"
    as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if [ ! -s "$PWFILE" ]; then
    # A random password made here, never committed.
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$PWFILE")
  fi
  if as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    say "PostgreSQL already running on 127.0.0.1:$PORT"
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      die "port $PORT is already taken by another program; set KERBSIDE_PG_PORT to a free port"
    fi
    say "starting PostgreSQL on 127.0.0.1:$PORT"
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -w -t 60 -l "$PGDATA/server.log" \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK -c max_connections=200 -c shared_buffers=256MB -c fsync=on" \
      start >/dev/null || { tail -n 20 "$PGDATA/server.log" >&2; die "PostgreSQL did not start (log above)"; }
  fi
  psql_admin -d postgres <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kerbside') THEN
    CREATE ROLE kerbside LOGIN CREATEDB;
  END IF;
END \$\$;
ALTER ROLE kerbside PASSWORD '$(cat "$PWFILE")';
SQL
  if ! psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='kerbside'" | grep -q 1; then
    createdb_ kerbside
  else
    extensions_ kerbside  # a database made before an extension was added (pgRouting: migration 0010)
  fi
  (umask 077; printf 'KERBSIDE_DATABASE_URL=%s\n' "$(url_for kerbside)" > "$DATA/local.env")
}

extensions_() {
  # Extensions need a superuser; create them here so migrations run as the app role.
  psql_admin -d "$1" -c "CREATE EXTENSION IF NOT EXISTS postgis; CREATE EXTENSION IF NOT EXISTS btree_gist; CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE EXTENSION IF NOT EXISTS pgrouting;" >/dev/null \
    || die "could not create the extensions in $1 (pgRouting missing? run: make install)"
}

createdb_() {
  local name="$1"
  psql_admin -d postgres -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null
  psql_admin -d postgres -c "CREATE DATABASE \"$name\" OWNER kerbside" >/dev/null
  extensions_ "$name"
}

case "${1:-}" in
  start) start ;;
  stop)
    if [ -s "$PGDATA/PG_VERSION" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
      say "stopping PostgreSQL"
      as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    else
      say "PostgreSQL is not running"
    fi ;;
  restart)
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    start ;;
  createdb) createdb_ "${2:?database name}" ;;
  dropdb) psql_admin -d postgres -c "DROP DATABASE IF EXISTS \"${2:?database name}\" WITH (FORCE)" >/dev/null ;;
  url) url_for "${2:-kerbside}" ;;
  checkpoint) psql_admin -d postgres -c CHECKPOINT >/dev/null ;;  # benches: start each phase from a checkpoint
  *) die "usage: scripts/pg.sh start|stop|restart|createdb NAME|dropdb NAME|url NAME|checkpoint" ;;
esac
