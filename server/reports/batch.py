"""Group commit for the report intake: the reports waiting in an API process go to the database together.

Each API process keeps one IntakeBatcher beside its async pool (server/main.py). A report the batched path can
take (server/reports/service.py submit_report_async) is queued here as its kerbside_intake_ready item; each of
the batcher's senders (KERBSIDE_INTAKE_BATCH_SENDERS, one by default) takes every report waiting when it comes
free (up to BATCH_MAX) and sends them as one statement,
kerbside_intake_batch (migration 0022): one round trip, one pool checkout and one commit for them all. Each
report is its own subtransaction there, so one that fails is declined alone, with nothing of it stored.

There is no timer for a report alone: it goes at once. Under load (the sender's last batch held LINGER_AFTER
reports or more) a sender that finds fewer than half as many waiting waits once, KERBSIDE_INTAKE_BATCH_LINGER_MS
(1 ms by default), for the reports on their way: the answers to its last batch have just gone out, and their
devices' next reports are being read. What would be two statements is then one, with less work per report.

Every report is answered from the batch's result: its own outcome (written, or declined with the reason). When
the statement fails as a whole (a broken connection, a database restarting) whether the batch was committed is
not known, and every report in it is declined, so each is taken again on its own by the two-statement path, whose
retry lookup answers one that was in fact committed as a retry: none lost, none stored twice. When no connection
came free in the pool's timeout, nothing was sent: each report gets the pool's PoolTimeout (a 503), as on the
two-statement path; so does a report that no sender took within that timeout (a database that answers nothing
holds the senders: the reports behind them are not left waiting for it). The NOTIFYs of
the batch's new events go after the commit, in one statement of their own (see NOTIFY).
"""
from __future__ import annotations

import asyncio
import logging

import orjson
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from server.metrics import INTAKE_BATCH

log = logging.getLogger("kerbside.intake")

BATCH_MAX = 32  # reports per statement: each is a subtransaction, and PostgreSQL caches 64 per transaction
LINGER_AFTER = 4  # a last batch this large means load: a sender finding fewer than half as many waits once
STATEMENT = "SELECT kerbside_intake_batch(%(items)s::jsonb)"
# The intake's NOTIFYs (a batch's, or one report's on the two-statement path), after its commit, as a
# transaction of their own: it writes nothing, so it holds the notification queue lock only for a moment, instead
# of across the commit flush. A crash in between loses only the wake-ups: the outbox worker also runs on a timer,
# and event streams catch up from the timeline.
NOTIFY = "SELECT pg_notify(n->>0, n->>1) FROM jsonb_array_elements(%(notes)s::jsonb) AS n"
DECLINED = {"declined": "batch"}


class _Waiting:
    """A report in the queue: its item, where its outcome goes, and whether a sender took it or it gave up."""

    __slots__ = ("item", "future", "taken", "gone")

    def __init__(self, item: str, future: asyncio.Future) -> None:
        self.item, self.future, self.taken, self.gone = item, future, False, False


class IntakeBatcher:
    """The process's intake queue and its senders (see the module)."""

    def __init__(self, pool: AsyncConnectionPool, senders: int, wait_seconds: float,
                 linger_seconds: float = 0.0) -> None:
        self._pool = pool
        self._wait = wait_seconds
        self._linger = linger_seconds
        self._waiting: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._senders = [asyncio.create_task(self._send(), name=f"intake-batch-{i}") for i in range(senders)]

    async def submit(self, item: str) -> dict:
        """One report's kerbside_intake_ready item (JSON text); its outcome once the batch it went in has
        committed: {"caller", "written"} or {"declined": reason}.

        A report no sender has taken within the pool's timeout (a database that answers nothing holds every
        sender) is sent nowhere and gets the pool's PoolTimeout, a 503, as a request waiting for a connection
        does. One taken, in a batch the database has not answered within that timeout once more, gets the 503
        too: it was not acknowledged, and the batch may yet commit, so the device sends it again with the same
        client_id and is answered from what was stored (or it is stored then). A batch holds up to BATCH_MAX
        requests, and none of them is left hanging on a database that has stopped answering.
        """
        entry = _Waiting(item, asyncio.get_running_loop().create_future())
        self._waiting.put_nowait(entry)
        try:
            return await asyncio.wait_for(asyncio.shield(entry.future), self._wait)
        except TimeoutError:
            if not entry.taken:
                entry.gone = True
                raise PoolTimeout(f"no intake batch could be sent within {self._wait:g} s") from None
        try:
            return await asyncio.wait_for(asyncio.shield(entry.future), self._wait)
        except TimeoutError:
            raise PoolTimeout(f"the database has not answered the report's batch within {2 * self._wait:g} s; "
                              "send it again with the same client_id") from None

    async def close(self) -> None:
        """Stop the senders (after the server has drained its requests); a report still waiting is declined."""
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        while not self._waiting.empty():
            entry = self._waiting.get_nowait()
            if not entry.future.done():
                entry.future.set_result(DECLINED)

    def _take(self, entry: _Waiting, batch: list[_Waiting]) -> None:
        if not entry.gone:
            entry.taken = True
            batch.append(entry)

    def _drain(self, batch: list[_Waiting]) -> None:
        while len(batch) < BATCH_MAX and not self._waiting.empty():
            self._take(self._waiting.get_nowait(), batch)

    async def _send(self) -> None:
        last = 0
        while True:
            batch: list[_Waiting] = []
            self._take(await self._waiting.get(), batch)
            try:
                self._drain(batch)
                if self._linger and last >= LINGER_AFTER and len(batch) < last // 2:  # see the module
                    await asyncio.sleep(self._linger)
                    self._drain(batch)
                last = len(batch)
                if not batch:
                    continue
                await self._run(batch)
            except PoolTimeout as exc:  # no connection came free: nothing was sent, and none will come sooner
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_exception(exc)  # a 503, as on the two-statement path
            except asyncio.CancelledError:
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_result(DECLINED)
                raise
            except Exception:  # answered per report by the two-statement path (see the module)
                log.warning("an intake batch of %d failed; each report is taken on its own", len(batch),
                            exc_info=True)
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_result(DECLINED)

    async def _run(self, batch: list[_Waiting]) -> None:
        INTAKE_BATCH.observe(len(batch))
        async with self._pool.connection() as conn:
            cur = await conn.execute(STATEMENT, {"items": "[" + ",".join(entry.item for entry in batch) + "]"},
                                     prepare=True)
            outcomes = orjson.loads((await cur.fetchone())[0])
            notes = []
            for entry, outcome in zip(batch, outcomes, strict=True):
                notes += (outcome.get("written") or {}).get("notify") or []
                if not entry.future.done():  # its request may have gone (the client hung up)
                    entry.future.set_result(outcome)
            if notes:
                await conn.execute(NOTIFY, {"notes": orjson.dumps(notes).decode()}, prepare=True)
