"""Sending the outbox: one pass (Sync.run_once) and the background loop that repeats it (SyncLoop).

The loop runs on its own thread; whatever it has to tell the UI goes through `notify`, which the
Kivy app wraps in Clock.schedule_once so widgets are only touched on the UI thread.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .api import Api, ApiError, AuthError, Offline
from .models import JOB_STATUS, QueueItem
from .outbox import Outbox

log = logging.getLogger("fieldapp.sync")
IDLE, OFFLINE, AUTH, OK = "idle", "offline", "auth", "ok"


@dataclass
class SyncStatus:
    """What the last pass did, for the UI's banner."""

    state: str = IDLE
    message: str = ""
    sent: int = 0
    retried: int = 0
    failed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


class Sync:
    """Sends due items: a report, then its photos; a status change's photos, then the change.

    Up to `concurrency` items are in flight at once (reports are independent; the server answers a
    repeated client_id with its original answer). Moves on one job go one at a time, in order.
    """

    def __init__(self, outbox: Outbox, api: Callable[[], Api | None],
                 on_sent: Callable[[QueueItem, dict], None] | None = None, concurrency: int = 4):
        self.outbox = outbox
        self.api = api
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fieldapp-send")
        self._stop_pass = False
        self.on_sent = on_sent  # e.g. keep the cached job's status in step with a sent move
        self.paused_reason: str | None = None  # set on a 401: nothing is sent until sign-in again
        self.hold_until = 0.0  # offline: nothing is tried before this (one backoff for the whole queue)
        self.offline_message = ""

    def close(self) -> None:
        """Stop the sending threads."""
        self._pool.shutdown(wait=True)

    def resume(self) -> None:
        """Clear a sign-in pause (after a new sign-in)."""
        self.paused_reason = None

    def run_once(self, now: float | None = None, limit: int | None = None, force: bool = False) -> SyncStatus:
        """Send what is due now; stops early when the network is down or the token is refused."""
        now = time.time() if now is None else now
        status = SyncStatus(state=OK)
        api = self.api()
        if api is None or self.paused_reason:
            status.state, status.message = AUTH, self.paused_reason or "not signed in"
        elif now < self.hold_until and not force:
            status.state, status.message = OFFLINE, self.offline_message
        else:
            self._pass(api, now, limit, status)
        status.counts = self.outbox.counts()
        return status

    def _pass(self, api: Api, now: float, limit: int | None, status: SyncStatus) -> None:
        batch, jobs = [], set()
        for item in self.outbox.due(now)[:limit]:
            if item.kind == JOB_STATUS:  # one move per job per pass, oldest first: order matters
                if item.target in jobs or self.outbox.blocked(item):
                    continue
                jobs.add(item.target)
            batch.append(item)
        self._stop_pass = False
        lock = threading.Lock()
        # Reports are independent: a few in flight at once hide the network's round trips.
        for future in [self._pool.submit(self._one, api, item, status, lock) for item in batch]:
            future.result()

    def _one(self, api: Api, item: QueueItem, status: SyncStatus, lock: threading.Lock) -> None:
        if self._stop_pass or not self.outbox.claim(item.id):
            return
        try:
            self._send(api, item)
            with lock:
                status.sent += 1
                self.hold_until = 0.0
        except AuthError as exc:
            self.outbox.release(item.id)
            with lock:
                self._stop_pass = True
                self.paused_reason = exc.message
                status.state, status.message = AUTH, exc.message
        except ApiError as exc:
            if not exc.retryable:
                self.outbox.fail(item.id, exc.message, exc.code)
                with lock:
                    status.failed += 1
                return
            at = self.outbox.retry_later(item.id, exc.message)
            with lock:
                status.retried += 1
                status.message = exc.message
                if isinstance(exc, Offline):  # the network is down: the rest would fail the same way
                    self._stop_pass = True
                    self.hold_until, self.offline_message = max(self.hold_until, at), exc.message
                    if status.state != AUTH:
                        status.state = OFFLINE
        except Exception as exc:  # a bug must not kill the loop or lose the item
            log.exception("sending item %s failed", item.id)
            self.outbox.retry_later(item.id, f"unexpected error: {exc}")
            with lock:
                status.retried += 1

    def _send(self, api: Api, item: QueueItem) -> None:
        if item.kind == JOB_STATUS:
            self._send_status(api, item)
        else:
            self._send_report(api, item)

    def _send_report(self, api: Api, item: QueueItem) -> None:
        ref = item.reference
        if ref is None:
            _, answer = api.submit_report(item.payload)
            self.outbox.record_result(item.id, answer)
            ref = answer["reference"]
        for p in item.photos:
            if p.server_id is None:
                self.outbox.record_photo(p.id, api.report_photo(ref, p.client_id, p.path)["id"])
        self.outbox.mark_sent(item.id)
        _forget_files(item)

    def _send_status(self, api: Api, item: QueueItem) -> None:
        ids = []
        for p in item.photos:
            if p.server_id is None:
                p.server_id = api.job_photo(item.target, p.client_id, p.path, p.kind)["id"]
                self.outbox.record_photo(p.id, p.server_id)
            ids.append(p.server_id)
        body = {**item.payload, "photo_ids": sorted(set(item.payload.get("photo_ids") or []) | set(ids))}
        answer = api.job_status(item.target, body)
        self.outbox.mark_sent(item.id, answer)
        _forget_files(item)
        if self.on_sent is not None:
            self.on_sent(item, answer)


def _forget_files(item: QueueItem) -> None:
    """The server has the photos: free the device's space."""
    for p in item.photos:
        try:
            Path(p.path).unlink()
        except OSError:
            pass


class SyncLoop:
    """Runs Sync.run_once on a background thread whenever something is due, or when kicked."""

    def __init__(self, sync: Sync, notify: Callable[[SyncStatus], None] | None = None, idle_seconds: float = 30.0):
        self.sync, self.notify, self.idle_seconds = sync, notify, idle_seconds
        self.chunk = 20  # the UI hears about progress every this many items
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._force = False
        self._thread: threading.Thread | None = None
        self.last = SyncStatus()

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="fieldapp-sync", daemon=True)
            self._thread.start()

    def kick(self, force: bool = True) -> None:
        """Run a pass now (something was queued, the user pressed retry, we signed in again)."""
        self._force = self._force or force
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the item being sent (if any) is done."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            force, self._force = self._force, False
            try:
                self.last = self.sync.run_once(limit=self.chunk, force=force)
            except Exception as exc:  # e.g. the store was closed under us
                log.exception("sync pass failed")
                self.last = SyncStatus(state=IDLE, message=str(exc))
            if self.notify is not None:
                self.notify(self.last)
            self._wake.wait(self._wait_seconds())

    def _wait_seconds(self) -> float:
        if self.last.state == AUTH:
            return self.idle_seconds
        if self.last.state == OFFLINE:
            return max(0.05, min(self.idle_seconds, self.sync.hold_until - time.time()))
        if not (self.last.sent or self.last.retried or self.last.failed):
            # Nothing moved (e.g. only blocked items are due): do not spin; a kick wakes us.
            nxt = self.sync.outbox.next_due_at()
            return self.idle_seconds if nxt is None or nxt <= time.time() else min(self.idle_seconds, nxt - time.time())
        nxt = self.sync.outbox.next_due_at()
        if nxt is None:
            return self.idle_seconds
        # The pass moved something: the next chunk of a backlog goes at once (a pause here would leave the
        # network idle between chunks); a retry waits for its backoff.
        return max(0.0, min(self.idle_seconds, nxt - time.time()))
