"""GET /api/v1/events: job changes as server-sent events, fed by PostgreSQL LISTEN/NOTIFY.

One LISTEN connection per API process (the Hub) fans notifications out to every open stream, so
any number of API processes behind a load balancer each see every committed change. A notification
is only a pointer (job, event id); the Hub loads the events in one query per burst and each stream
keeps those its caller may see (contractor and crew tokens: their own jobs only).

Reconnect: the SSE `id` is job_events.id. A client that comes back with `Last-Event-ID` first gets
every event after that id from the table (at most CATCH_UP_LIMIT; beyond that a `reset` event tells
it to reload), then the live ones. A fresh stream starts with a `ready` event naming the newest id,
so a page can load its list after `ready` and miss nothing. If the listener loses the database,
every stream re-reads the table from where it was once the listener is back.
"""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse
from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool

from server import events
from server.config import get_settings
from server.db import new_session
from server.deps import Principal, SessionDep, require
from server.errors import DomainError
from server.jobs.access import SEE_ALL

from server.contact_centre import queries

log = logging.getLogger("kerbside.stream")
router = APIRouter(prefix="/api/v1", tags=["live"])
STREAM_ROLES = ("advisor", "supervisor", "contractor", "crew")
KEEPALIVE_S = 15.0
CATCH_UP_LIMIT = 1000
QUEUE_SIZE = 2000
RESYNC_LOOKBACK = 200  # ids below the newest sent that a resync re-reads (late commits of older ids)
RESYNC = object()
CLOSE = object()


@dataclass(eq=False)
class Client:
    """One open stream: who is listening and their queue of events."""

    who: Principal
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    lagging: bool = False

    def wants(self, item: dict) -> bool:
        """May this caller see this event?"""
        role = self.who.role
        if role in SEE_ALL:
            return True
        if role == "contractor":
            return self.who.contractor_id is not None and item["_contractor_id"] == self.who.contractor_id
        if role == "crew":
            return self.who.crew_id is not None and item["_crew_id"] == self.who.crew_id
        return False

    def offer(self, item: Any) -> None:
        """Queue without waiting; a client too slow to keep up re-reads from the table instead."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.lagging = True


def _dsn() -> str:
    return make_url(get_settings().database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class Hub:
    """The per-process LISTEN connection and the set of open streams."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.ready = asyncio.Event()
        self._incoming: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    def _running(self) -> bool:
        loop = asyncio.get_running_loop()
        return bool(self._tasks) and all(not t.done() and t.get_loop() is loop for t in self._tasks)

    async def start(self) -> None:
        """Start the listener and dispatcher in this event loop (once)."""
        if self._running():
            return
        await self.stop()
        self.ready = asyncio.Event()
        self._incoming = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._listen(), name="kerbside-listen"),
                       asyncio.create_task(self._dispatch(), name="kerbside-fanout")]
        self._chain_exit_signals()

    def close_streams(self) -> None:
        """End every open stream (clients reconnect with Last-Event-ID, to this process or another)."""
        for c in list(self.clients):
            c.offer(CLOSE)

    def _chain_exit_signals(self) -> None:
        # uvicorn waits for open responses before it stops, and an event stream never ends by itself:
        # on SIGTERM/SIGINT end the streams first, then let uvicorn's own handler run.
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if getattr(previous, "kerbside_streams", False) or not callable(previous):
                continue

            def handler(signum, frame, previous=previous):
                loop.call_soon_threadsafe(self.close_streams)
                previous(signum, frame)

            handler.kerbside_streams = True
            signal.signal(sig, handler)

    async def stop(self) -> None:
        """Cancel the listener (application shutdown)."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            if not t.done() and t.get_loop() is asyncio.get_running_loop():
                t.cancel()
        for t in tasks:
            if t.get_loop() is asyncio.get_running_loop():
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass

    async def _listen(self) -> None:
        delay, first = 0.5, True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(_dsn(), autocommit=True) as conn:
                    await conn.execute(f"LISTEN {events.CHANNEL}")
                    self.ready.set()
                    if not first:  # events committed while we were away are in the table
                        for c in list(self.clients):
                            c.offer(RESYNC)
                    first, delay = False, 0.5
                    async for note in conn.notifies():
                        self._incoming.put_nowait(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: keep trying, streams stay open
                self.ready.clear()
                log.warning("event listener lost the database (%s); retrying in %.1f s", exc.__class__.__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _dispatch(self) -> None:
        while True:
            batch = [await self._incoming.get()]
            while not self._incoming.empty() and len(batch) < 500:
                batch.append(self._incoming.get_nowait())
            if not self.clients:
                continue
            ids = []
            for raw in batch:
                try:
                    ids.append(int(json.loads(raw)["event_id"]))
                except (ValueError, KeyError, TypeError):
                    log.warning("ignoring a malformed notification: %.200s", raw)
            if not ids:
                continue
            try:
                items = await run_in_threadpool(_load, ids)
            except Exception:
                log.exception("could not load events %s; streams will re-read the table", ids[:10])
                for c in list(self.clients):
                    c.offer(RESYNC)
                continue
            for item in items:
                for c in list(self.clients):
                    if c.wants(item):
                        c.offer(item)


HUB = Hub()


def _load(ids: list[int]) -> list[dict]:
    with new_session() as s:
        return queries.events_by_id(s, ids)


def _after(who: Principal, after: int, limit: int) -> list[dict]:
    with new_session() as s:
        return queries.events_after(s, who, after, limit)


def _newest() -> int:
    with new_session() as s:
        return queries.last_event_id(s)


def _frame(item: dict) -> str:
    public = {k: v for k, v in item.items() if not k.startswith("_")}
    return f"id: {item['id']}\nevent: job\ndata: {json.dumps(public, separators=(',', ':'))}\n\n"


def _control(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def _stream(client: Client, last_id: int | None):
    sent: deque[int] = deque(maxlen=5000)
    seen: set[int] = set()
    newest = 0

    def remember(i: int) -> None:
        if len(sent) == sent.maxlen:
            seen.discard(sent[0])
        sent.append(i)
        seen.add(i)

    async def catch_up(after: int) -> list[str]:
        nonlocal newest
        items = await run_in_threadpool(_after, client.who, after, CATCH_UP_LIMIT + 1)
        if len(items) > CATCH_UP_LIMIT:
            newest = await run_in_threadpool(_newest)
            return [_control("reset", {"reason": "too far behind; reload the list", "last_event_id": newest})]
        out = []
        for item in items:
            if item["id"] not in seen:
                remember(item["id"])
                newest = max(newest, item["id"])
                out.append(_frame(item))
        return out

    HUB.clients.add(client)  # before any catch-up read, so nothing committed meanwhile is lost
    try:
        yield "retry: 3000\n\n"
        try:
            await asyncio.wait_for(HUB.ready.wait(), 10)
        except asyncio.TimeoutError:
            log.warning("event stream opened while the listener is not connected")
        if last_id is None:
            newest = await run_in_threadpool(_newest)
            caught = 0
        else:
            newest = last_id
            frames = await catch_up(last_id)
            caught = len(frames)
            for f in frames:
                yield f
        yield _control("ready", {"last_event_id": newest, "caught_up": caught})
        while True:
            if client.lagging:
                client.lagging = False
                while not client.queue.empty():
                    client.queue.get_nowait()
                for f in await catch_up(max(newest - RESYNC_LOOKBACK, 0)):
                    yield f
            try:
                item = await asyncio.wait_for(client.queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield ": keepalive\n\n"
                continue
            if item is CLOSE:
                return
            if item is RESYNC:
                for f in await catch_up(max(newest - RESYNC_LOOKBACK, 0)):
                    yield f
                continue
            if item["id"] in seen:
                continue
            remember(item["id"])
            newest = max(newest, item["id"])
            yield _frame(item)
    finally:
        HUB.clients.discard(client)


@router.get("/events", summary="Live job changes (server-sent events; reconnect with Last-Event-ID)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}, 403: {"content": {"application/problem+json": {}}}})
async def stream_events(session: SessionDep, who: Annotated[Principal, require(*STREAM_ROLES)],
                        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None):
    """`event: job` frames (id = job event id, data = the event and its job's current row) for jobs you may see."""
    after = None
    if last_event_id is not None and last_event_id.strip():
        if not last_event_id.strip().isdigit() or len(last_event_id.strip()) > 18:
            raise DomainError("Last-Event-ID must be an event id (a whole number)", fields=["Last-Event-ID"],
                              code="invalid-last-event-id", status=422)
        after = int(last_event_id.strip())
    # The stream may stay open for hours: give the request's pooled connection back now.
    await run_in_threadpool(session.close)
    await HUB.start()
    return StreamingResponse(_stream(Client(who), after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
