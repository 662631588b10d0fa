"""python -m server.worker: APScheduler running the periodic jobs that modules declare."""
from __future__ import annotations

import logging
import os
import signal
import socket
from datetime import datetime, timezone

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
    from server.outbox.worker import deliver_due

    s = get_settings()
    return [(heartbeat, s.worker_heartbeat_seconds), (deliver_due, s.outbox_interval_seconds),
            (poll_contractors, s.contractor_poll_seconds), (run_sla_sweep, s.sla_sweep_seconds)]


def main() -> None:
    """Run the scheduler in the foreground until SIGINT/SIGTERM."""
    logging.basicConfig(level=get_settings().log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per run is noise
    scheduler = BlockingScheduler(timezone="UTC")
    for fn, seconds in scheduled_jobs():
        # coalesce + max_instances=1: a slow run is never stacked on itself.
        scheduler.add_job(fn, "interval", seconds=seconds, id=fn.__name__, coalesce=True, max_instances=1,
                          next_run_time=datetime.now(timezone.utc))
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    log.info("worker %s started with %d jobs", WORKER_NAME, len(scheduler.get_jobs()))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
