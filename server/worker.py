"""python -m server.worker: APScheduler running the periodic jobs that modules declare."""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from datetime import datetime, timezone

import psycopg

from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.dialects.postgresql import insert

from server.config import get_settings
from server.db import new_session
from server.inbound.models import WorkerHeartbeat

log = logging.getLogger("kerbside.worker")
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


def heartbeat() -> None:
    """Record that this worker is alive (read by /healthz)."""
    now = datetime.now(timezone.utc)
    with new_session() as s:
        stmt = insert(WorkerHeartbeat).values(name=WORKER_NAME, beat_at=now, info={"pid": os.getpid()})
        s.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"beat_at": now}))
        s.commit()


def scheduled_jobs() -> list[tuple[callable, int]]:
    """(function, interval seconds) for every periodic job the domain modules declare."""
    from server.inbound.scheduled import poll_contractors
    from server.jobs.scheduled import run_sla_sweep
    from server.notifications.contacts import sweep_retention

    s = get_settings()
    return [(heartbeat, s.worker_heartbeat_seconds), (poll_contractors, s.contractor_poll_seconds),
            (run_sla_sweep, s.sla_sweep_seconds), (sweep_retention, 3600)]


_wake = threading.Event()


def delivery_loop(stop: threading.Event) -> None:
    """Deliver outbox rows as soon as one is committed (NOTIFY), and at least every interval regardless."""
    from server.outbox.worker import deliver_due

    interval = get_settings().outbox_interval_seconds
    while not stop.is_set():
        _wake.wait(timeout=interval)
        _wake.clear()  # a NOTIFY arriving during the run below sets it again: no wake-up is lost
        try:
            while deliver_due() and not stop.is_set():
                pass
        except Exception:  # the database may be away: log, wait a little, go on
            log.exception("delivery run failed")
            stop.wait(1.0)


def listen_loop(stop: threading.Event) -> None:
    """LISTEN for new outbox rows and wake the delivery loop; reconnects if the database goes away."""
    from server.outbox.service import CHANNEL

    url = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    while not stop.is_set():
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                _wake.set()  # catch up on anything committed while we were not listening
                while not stop.is_set():
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        _wake.set()
        except psycopg.Error as exc:
            log.warning("outbox listener lost its connection (%s); retrying", exc.__class__.__name__)
            stop.wait(2.0)


def main() -> None:
    """Run the scheduler in the foreground until SIGINT/SIGTERM."""
    from server.observability import configure_logging

    configure_logging(get_settings().log_level, get_settings().log_format)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per run is noise
    scheduler = BlockingScheduler(timezone="UTC")
    for fn, seconds in scheduled_jobs():
        # coalesce + max_instances=1: a slow run is never stacked on itself.
        scheduler.add_job(fn, "interval", seconds=seconds, id=fn.__name__, coalesce=True, max_instances=1,
                          next_run_time=datetime.now(timezone.utc))
    stop = threading.Event()
    for loop in (delivery_loop, listen_loop):
        threading.Thread(target=loop, args=(stop,), name=loop.__name__, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: (stop.set(), scheduler.shutdown(wait=False)))
    log.info("worker %s started with %d jobs", WORKER_NAME, len(scheduler.get_jobs()))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
