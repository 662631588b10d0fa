"""Pushing updates to our server: signed webhook POSTs with retries, batching, duplicates and shuffles."""
from __future__ import annotations

import asyncio
import json

import httpx

from contractors import signing
from contractors.simulator.engine import Update

BATCH_MAX = 50


class Pusher:
    """Queue of bsl updates and the task that delivers them (one batch at a time, in order)."""

    def __init__(self, state):
        self.state = state  # SimState: settings, faults, counters (read at send time, so changes apply)
        self.queue: asyncio.Queue[Update] = asyncio.Queue()
        self.http = httpx.AsyncClient(timeout=5.0)

    def enqueue(self, update: Update) -> None:
        """Called by the engine for every update; only the street-lighting API pushes."""
        if update.kind == "bsl" and self.state.settings.callback_url:
            self.queue.put_nowait(update)

    def drain(self) -> None:
        """Drop everything queued (reset)."""
        while not self.queue.empty():
            self.queue.get_nowait()

    async def run(self) -> None:
        """Deliver forever (cancelled at shutdown)."""
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < BATCH_MAX:
                batch.append(self.queue.get_nowait())
            try:
                await self.deliver(batch)
            except Exception:  # noqa: BLE001 - a simulator bug must not stop pushing for good
                self.state.counters["push_errors"] += 1

    async def deliver(self, batch: list[Update]) -> None:
        """One batch: maybe shuffled, retried with backoff, maybe sent twice."""
        counters, box = self.state.counters, self.state.faults
        items = box.shuffle([u.bsl_json() for u in batch])
        body = json.dumps({"updates": items}, separators=(",", ":")).encode()
        if not await self._post(body):
            counters["pushes_failed"] += 1
            return
        counters["updates_pushed"] += len(batch)
        if box.hit(box.faults.duplicate_push_rate):
            counters["pushes_duplicated"] += 1
            await self._post(body)

    async def _post(self, body: bytes) -> bool:
        settings = self.state.settings
        for attempt in range(settings.push_retries + 1):
            settings = self.state.settings  # may have changed (reset, /_control/config) while we waited
            if not settings.callback_url:
                self.state.counters["pushes_dropped"] += 1
                return False
            headers = {"Content-Type": "application/json", **signing.sign(settings.push_secret, body)}
            if settings.callback_token:
                headers["Authorization"] = f"Bearer {settings.callback_token}"
            try:
                resp = await self.http.post(settings.callback_url.rstrip("/") + settings.callback_path,
                                            content=body, headers=headers)
                if resp.status_code < 300:
                    self.state.counters["pushes_sent"] += 1
                    return True
            except httpx.HTTPError:
                pass
            self.state.counters["push_attempts_failed"] += 1
            if attempt < settings.push_retries:
                await asyncio.sleep(settings.push_backoff_s * 2 ** attempt)
        return False

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()
