"""The device's SQLite store: one file under the app's data dir, migrated on open, safe across threads."""
from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .migrations import MIGRATIONS

DB_NAME = "fieldapp.sqlite3"


class Store:
    """One SQLite connection shared by the UI thread and the sync thread (serialised by a lock)."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_NAME
        self._lock = threading.RLock()
        # Autocommit mode; transactions are explicit (tx()). WAL keeps readers and the writer apart.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    @property
    def photo_dir(self) -> Path:
        """Where photos taken for the queue are kept until they are sent."""
        p = self.data_dir / "photos"
        p.mkdir(exist_ok=True)
        return p

    def schema_version(self) -> int:
        """How many migrations have been applied."""
        with self._lock:
            return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> int:
        """Apply the migrations this file has not had yet, each in its own transaction; the new version."""
        with self._lock:
            current = self.schema_version()
            if current > len(MIGRATIONS):
                raise RuntimeError(f"the store {self.path} is from a newer app (schema {current}); update the app")
            for n in range(current, len(MIGRATIONS)):
                self._conn.executescript(f"BEGIN;\n{MIGRATIONS[n]}\nPRAGMA user_version = {n + 1};\nCOMMIT;")
            return self.schema_version()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE … COMMIT, rolled back on error)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        """Rows of a read query."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def get(self, key: str, default: Any = None) -> Any:
        """A setting (JSON-decoded), or default."""
        rows = self.query("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def set(self, **values: Any) -> None:
        """Store settings (JSON-encoded); None deletes one."""
        with self.tx() as c:
            for key, value in values.items():
                if value is None:
                    c.execute("DELETE FROM settings WHERE key = ?", (key,))
                else:
                    c.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                              "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, json.dumps(value)))

    def close(self) -> None:
        """Close the connection (the file stays; a new Store on it carries on)."""
        with self._lock:
            self._conn.close()
