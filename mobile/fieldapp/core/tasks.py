"""Run a blocking call off the UI thread and hand its result back through a `deliver` function.

The Kivy app passes deliver = lambda f: Clock.schedule_once(lambda dt: f()); tests pass a plain call.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("fieldapp.tasks")


class Tasks:
    """A small thread pool whose callbacks run wherever `deliver` puts them."""

    def __init__(self, deliver: Callable[[Callable[[], None]], None] | None = None, workers: int = 2):
        self.deliver = deliver or (lambda f: f())
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fieldapp-task")

    def run(self, fn: Callable[[], Any], done: Callable[[Any], None] | None = None,
            error: Callable[[Exception], None] | None = None) -> None:
        """Call fn() on a worker thread; then done(result) or error(exception) via deliver."""
        def work() -> None:
            try:
                result = fn()
            except Exception as exc:  # reported to the caller, not swallowed
                log.info("background task failed: %s", exc)
                if error is not None:
                    self.deliver(lambda e=exc: error(e))
                return
            if done is not None:
                self.deliver(lambda r=result: done(r))
        self._pool.submit(work)

    def shutdown(self) -> None:
        """Stop taking work (running calls finish)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
