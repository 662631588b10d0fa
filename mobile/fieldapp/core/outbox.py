"""The outbox: everything is saved on the device first (with its client_id), then sent by the sync loop.

States: waiting → sending → sent, or → failed (refused by the server, with its reason). A retryable
problem (offline, 5xx, 408, 429, timeout) puts the item back to waiting with a backoff. An item left
in `sending` by a crash goes back to waiting when the store is next opened: resending is safe because
the server answers a repeated client_id with its original answer.
"""
from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

from .models import FAILED, JOB_STATUS, REPORT, SENDING, SENT, WAITING, PhotoItem, QueueItem
from .store import Store

BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0


def backoff_seconds(attempts: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
                    rand: float | None = None) -> float:
    """Exponential backoff with jitter: base·2^(attempts-1), capped, times 0.5–1.0."""
    r = random.random() if rand is None else rand
    return min(cap, base * 2 ** max(0, attempts - 1)) * (0.5 + r / 2)


class Outbox:
    """Queue items and their photos in the store."""

    def __init__(self, store: Store, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP):
        self.store, self.base, self.cap = store, base, cap
        self.recover()

    # -- adding -------------------------------------------------------------------------------
    def add_report(self, payload: dict[str, Any], photos: list[str] = ()) -> QueueItem:
        """Queue a report; payload gets a new client_id (uuid4) unless it has one."""
        payload = {**payload, "client_id": payload.get("client_id") or str(uuid.uuid4())}
        return self._add(REPORT, payload["client_id"], payload, None, [(p, "report") for p in photos])

    def add_job_status(self, job_ref: str, payload: dict[str, Any], photos: list[str] = (),
                       photo_kind: str = "completion") -> QueueItem:
        """Queue a crew status change for a job (its photos are uploaded first)."""
        payload = {**payload, "client_id": payload.get("client_id") or str(uuid.uuid4())}
        return self._add(JOB_STATUS, payload["client_id"], payload, job_ref, [(p, photo_kind) for p in photos])

    def _add(self, kind: str, client_id: str, payload: dict, target: str | None,
             photos: list[tuple[str, str]]) -> QueueItem:
        now = time.time()
        with self.store.tx() as c:
            cur = c.execute("INSERT INTO outbox (client_id, kind, target, payload, state, created_at, updated_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (client_id, kind, target, json.dumps(payload), WAITING, now, now))
            item_id = cur.lastrowid
            for path, photo_kind in photos:
                c.execute("INSERT INTO outbox_photos (item_id, client_id, path, kind) VALUES (?, ?, ?, ?)",
                          (item_id, str(uuid.uuid4()), str(path), photo_kind))
        return self.get(item_id)

    # -- reading ------------------------------------------------------------------------------
    def get(self, item_id: int) -> QueueItem | None:
        """One item with its photos."""
        rows = self.store.query("SELECT * FROM outbox WHERE id = ?", (item_id,))
        return self._items(rows)[0] if rows else None

    def items(self, kind: str | None = None, states: tuple[str, ...] | None = None) -> list[QueueItem]:
        """Items, newest first."""
        sql, args = "SELECT * FROM outbox WHERE 1=1", []
        if kind:
            sql, args = sql + " AND kind = ?", [*args, kind]
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += list(states)
        return self._items(self.store.query(sql + " ORDER BY id DESC", tuple(args)))

    def due(self, now: float | None = None) -> list[QueueItem]:
        """Waiting items whose next attempt is due, oldest first."""
        now = time.time() if now is None else now
        return self._items(self.store.query(
            "SELECT * FROM outbox WHERE state = ? AND next_attempt_at <= ? ORDER BY id", (WAITING, now)))

    def next_due_at(self) -> float | None:
        """When the next waiting item is due (None: nothing waits)."""
        rows = self.store.query("SELECT MIN(next_attempt_at) AS t FROM outbox WHERE state = ?", (WAITING,))
        return rows[0]["t"]

    def blocked(self, item: QueueItem) -> bool:
        """A status change waits while an earlier change to the same job is unsent."""
        if item.kind != JOB_STATUS:
            return False
        rows = self.store.query("SELECT 1 FROM outbox WHERE kind = ? AND target = ? AND id < ? AND state != ?",
                                (JOB_STATUS, item.target, item.id, SENT))
        return bool(rows)

    def counts(self) -> dict[str, int]:
        """How many items are in each state."""
        out = {s: 0 for s in (WAITING, SENDING, SENT, FAILED)}
        for r in self.store.query("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state"):
            out[r["state"]] = r["n"]
        return out

    def _items(self, rows) -> list[QueueItem]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        photos: dict[int, list[PhotoItem]] = {}
        for i in range(0, len(ids), 500):  # SQLite's variable limit
            chunk = ids[i:i + 500]
            for p in self.store.query(f"SELECT * FROM outbox_photos WHERE item_id IN ({','.join('?' * len(chunk))}) "
                                      "ORDER BY id", tuple(chunk)):
                photos.setdefault(p["item_id"], []).append(
                    PhotoItem(p["id"], p["item_id"], p["client_id"], p["path"], p["kind"], p["server_id"]))
        return [QueueItem(r["id"], r["client_id"], r["kind"], r["state"], json.loads(r["payload"]), r["target"],
                          r["attempts"], r["next_attempt_at"], r["last_error"], r["error_code"],
                          json.loads(r["result"]) if r["result"] else None, r["created_at"], r["updated_at"],
                          photos.get(r["id"], [])) for r in rows]

    # -- sending state ------------------------------------------------------------------------
    def claim(self, item_id: int) -> bool:
        """waiting → sending (False if someone else took it or it was deleted)."""
        with self.store.tx() as c:
            return c.execute("UPDATE outbox SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
                             (SENDING, time.time(), item_id, WAITING)).rowcount == 1

    def record_result(self, item_id: int, result: dict) -> None:
        """Keep the server's answer (the report reference) before the photos go."""
        with self.store.tx() as c:
            c.execute("UPDATE outbox SET result = ?, updated_at = ? WHERE id = ?",
                      (json.dumps(result), time.time(), item_id))

    def record_photo(self, photo_id: int, server_id: int) -> None:
        """A photo reached the server (its id there)."""
        with self.store.tx() as c:
            c.execute("UPDATE outbox_photos SET server_id = ? WHERE id = ?", (server_id, photo_id))

    def mark_sent(self, item_id: int, result: dict | None = None) -> None:
        """The server answered 200/201 for the item and all its photos."""
        with self.store.tx() as c:
            c.execute("UPDATE outbox SET state = ?, result = COALESCE(?, result), last_error = NULL, "
                      "error_code = NULL, updated_at = ? WHERE id = ?",
                      (SENT, json.dumps(result) if result is not None else None, time.time(), item_id))

    def retry_later(self, item_id: int, error: str, now: float | None = None) -> float:
        """Back to waiting after a retryable problem; returns when the next attempt is due."""
        now = time.time() if now is None else now
        with self.store.tx() as c:
            row = c.execute("SELECT attempts FROM outbox WHERE id = ?", (item_id,)).fetchone()
            attempts = (row["attempts"] if row else 0) + 1
            at = now + backoff_seconds(attempts, self.base, self.cap)
            c.execute("UPDATE outbox SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, "
                      "error_code = NULL, updated_at = ? WHERE id = ?", (WAITING, attempts, at, error, now, item_id))
        return at

    def release(self, item_id: int, note: str | None = None) -> None:
        """Back to waiting with no attempt counted (e.g. sync paused for a sign-in problem)."""
        with self.store.tx() as c:
            c.execute("UPDATE outbox SET state = ?, last_error = COALESCE(?, last_error), updated_at = ? "
                      "WHERE id = ? AND state = ?", (WAITING, note, time.time(), item_id, SENDING))

    def fail(self, item_id: int, reason: str, code: str | None = None) -> None:
        """Refused by the server: kept, with the reason, until retried or deleted."""
        with self.store.tx() as c:
            c.execute("UPDATE outbox SET state = ?, last_error = ?, error_code = ?, attempts = attempts + 1, "
                      "updated_at = ? WHERE id = ?", (FAILED, reason, code, time.time(), item_id))

    # -- user actions -------------------------------------------------------------------------
    def retry(self, item_id: int) -> bool:
        """Failed or waiting → waiting, due now."""
        with self.store.tx() as c:
            return c.execute("UPDATE outbox SET state = ?, next_attempt_at = 0, updated_at = ? "
                             "WHERE id = ? AND state IN (?, ?)",
                             (WAITING, time.time(), item_id, FAILED, WAITING)).rowcount == 1

    def retry_all_now(self) -> int:
        """Make every waiting item due now (the user pressed 'send now'); how many."""
        with self.store.tx() as c:
            return c.execute("UPDATE outbox SET next_attempt_at = 0 WHERE state = ?", (WAITING,)).rowcount

    def delete(self, item_id: int) -> bool:
        """Delete an unsent item (a draft) and its photo files; sent items are history and stay."""
        item = self.get(item_id)
        if item is None or item.state not in (WAITING, FAILED):
            return False
        with self.store.tx() as c:
            c.execute("DELETE FROM outbox WHERE id = ?", (item_id,))
        for p in item.photos:
            _unlink(p.path)
        return True

    def recover(self) -> int:
        """After a crash or restart: items left `sending` go back to waiting, due now."""
        with self.store.tx() as c:
            return c.execute("UPDATE outbox SET state = ?, next_attempt_at = 0 WHERE state = ?",
                             (WAITING, SENDING)).rowcount


def _unlink(path: str) -> None:
    try:
        Path(path).unlink()
    except OSError:
        pass
