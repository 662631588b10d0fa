"""create_app(): the simulator as a FastAPI app (`uvicorn contractors.simulator.app:create_app --factory`)."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import Counter
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response

from contractors.simulator import bsl, control, faults, open311
from contractors.simulator.engine import Engine
from contractors.simulator.push import Pusher
from contractors.simulator.settings import SimSettings, from_env

# A 16×16 JPEG: the "after" photo every completion points to.
PHOTO = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1x"
    "eXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAAR"
    "CAAQABADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEG"
    "E1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWG"
    "h4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEB"
    "AQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYk"
    "NOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0"
    "tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDo6KKK+WPSP//Z")


class SimState:
    """Everything the simulator holds: settings, counters, faults, engine, pusher."""

    def __init__(self, settings: SimSettings):
        self.initial = self.settings = settings
        self.counters: Counter[str] = Counter()
        self.faults = faults.FaultBox(settings.seed, self.counters)
        self.pusher = Pusher(self)
        self.engine = Engine(settings.base_url, settings.ref_prefix, self.pusher.enqueue, self.counters)

    def reset(self) -> None:
        """Back to start-up: no orders, no faults, initial settings, same seed."""
        self.settings = self.initial
        self.counters.clear()
        self.faults.set(faults.Faults(seed=self.initial.seed))
        self.engine.reset()
        self.pusher.drain()


async def _ticker(sim: SimState) -> None:
    # Timed progress; polls often enough that a 0.2 s step looks like 0.2 s.
    while True:
        step = sim.settings.step_seconds
        await asyncio.sleep(min(0.05, step / 4) if step > 0 else 0.1)
        if sim.settings.step_seconds > 0:
            sim.engine.tick(time.monotonic(), sim.settings.step_seconds)


def create_app(settings: SimSettings | None = None) -> FastAPI:
    """The simulator app; settings from SIM_* environment variables unless given."""
    sim = SimState(settings or from_env())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        tasks = [asyncio.create_task(_ticker(sim)), asyncio.create_task(sim.pusher.run())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await sim.pusher.close()

    app = FastAPI(title="Kerbside contractor simulator", lifespan=lifespan)
    app.state.sim = sim
    app.middleware("http")(faults.middleware(lambda request: request.app.state.sim.faults))
    app.include_router(bsl.router)
    app.include_router(open311.router)
    app.include_router(control.router)

    @app.get("/health")
    async def health() -> dict:
        """Liveness."""
        return {"ok": True, "orders": len(sim.engine.orders)}

    @app.get("/photos/{name}")
    async def photo(name: str) -> Response:
        """The completion photo (the same small JPEG for every order)."""
        return Response(PHOTO, media_type="image/jpeg")

    return app
