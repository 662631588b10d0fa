"""A throwaway PostgreSQL + PostGIS cluster that a test may stop and start at will.

The shared cluster (scripts/pg.sh, .data/pg) hosts other runs' databases, so it is never restarted
by a test. This is the same recipe as scripts/pg.sh — initdb as an unprivileged user (the
`postgres` user when we are root), loopback only, a socket directory of its own, password auth for
TCP — in a temporary directory, on a free port, deleted afterwards.
"""
from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path


def _pg_bin() -> Path:
    configured = os.environ.get("KERBSIDE_PG_BIN")
    if configured:
        return Path(configured)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in Path(p).parent.name.split(".")
                                                                            if x.isdigit()])
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (make install)")
    return Path(found[-1])


class Cluster:
    """initdb/start/stop/destroy of one temporary cluster on 127.0.0.1:port."""

    def __init__(self, port: int):
        self.port = port
        self.bin = _pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="kerbside-faults-pg-"))
        self.root.chmod(0o755)  # the postgres user must reach the data and socket directories
        self.data, self.sock = self.root / "data", self.root / "run"
        self.log = self.root / "server.log"
        self.password = secrets.token_hex(16)
        self.runas = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.runas:
            cmd = ["runuser", "-u", self.runas, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                               f"{self.log.read_text(errors='replace')[-2000:] if self.log.exists() else ''}")
        return done

    def init(self) -> "Cluster":
        for d in (self.data, self.sock):
            d.mkdir()
            if self.runas:
                shutil.chown(d, self.runas)
        self.data.chmod(0o700)
        if self.runas:
            self.log.touch()
            shutil.chown(self.log, self.runas)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        return self

    def start(self) -> None:
        """Start and wait until it accepts connections (crash recovery included after an immediate stop)."""
        # fsync off: a throwaway cluster need not survive the machine; a stopped server it does survive.
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off "
                f"-c max_connections=100 -c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.log), "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop -m fast (sessions terminated, clean shutdown) or -m immediate (as after a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    def pids(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, …)."""
        post = int((self.data / "postmaster.pid").read_text().split()[0])
        kids = subprocess.run(["pgrep", "-P", str(post)], capture_output=True, text=True).stdout.split()
        return [post, *map(int, kids)]

    def freeze(self) -> list[int]:
        """SIGSTOP the whole server: a stalled database (hung storage, a VM paused) — connections stay open,
        nothing answers. Returns the pids for thaw()."""
        # The postmaster first, so it forks nothing after its children are listed (a backend started in between
        # would go on answering while the "frozen" database is meant to answer nothing).
        post, *_ = self.pids()
        os.kill(post, signal.SIGSTOP)
        pids = self.pids()
        for pid in pids[1:]:
            os.kill(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def thaw(pids: list[int]) -> None:
        """SIGCONT what freeze() stopped."""
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def psql(self, db: str, *sql: str) -> None:
        args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.sock), "-p", str(self.port),
                "-U", "postgres", "-d", db]
        for s in sql:
            args += ["-c", s]
        self._run(*args)

    def create_database(self, name: str) -> str:
        """Role kerbside (random password), database `name` with the extensions; returns its SQLAlchemy URL."""
        self.psql("postgres", f"CREATE ROLE kerbside LOGIN PASSWORD '{self.password}'",
                  f'CREATE DATABASE "{name}" OWNER kerbside')
        self.psql(name, "CREATE EXTENSION postgis", "CREATE EXTENSION btree_gist", "CREATE EXTENSION pg_trgm",
                  "CREATE EXTENSION pgrouting")
        return f"postgresql+psycopg://kerbside:{self.password}@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        """Stop (immediately) if running and delete the directory."""
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
