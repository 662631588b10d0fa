"""Open an endless response (the event stream) in process: read frames as they come, then hang up.

TestClient waits for a response to end, which an event stream never does; this drives the ASGI app
directly on a background event loop and hands each message to the test thread through a queue.
"""
from __future__ import annotations

import queue
from urllib.parse import urlsplit

import anyio
from anyio.from_thread import start_blocking_portal

WAIT_S = 30.0  # a safety bound for a frame that never comes, not a timing assertion


class Stream:
    """One GET to an ASGI app whose body is read incrementally."""

    def __init__(self, app, target: str, headers: dict[str, str] | None = None,
                 client: tuple[str, int] = ("testclient", 50000)) -> None:
        self.app, self.messages, self.buffer, self.raw = app, queue.Queue(), b"", b""
        parts = urlsplit(target)
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": parts.path, "raw_path": parts.path.encode(), "root_path": "",
            "query_string": parts.query.encode(), "client": client, "server": ("testserver", 80),
            "headers": [(b"host", b"testserver")] + [(k.lower().encode(), v.encode())
                                                   for k, v in (headers or {}).items()],
        }
        self._portal_cm = start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        self.gone = self.portal.call(anyio.Event)
        self.future = self.portal.start_task_soon(self._run)
        start = self._next()
        self.status = start["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        self.ended = False

    async def _run(self) -> None:
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            self.messages.put(message)

        try:
            await self.app(self.scope, receive, send)
        finally:
            self.messages.put({"type": "done"})

    def _next(self) -> dict:
        message = self.messages.get(timeout=WAIT_S)
        if message["type"] == "done":
            self.future.result()  # re-raise what the app failed with
            raise AssertionError("the app ended without answering")
        return message

    def frames(self, until) -> list[dict]:
        """Frames (dicts of field → value) up to and including the first for which until(frame) is true."""
        out: list[dict] = []
        while True:
            while b"\n\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\n\n", 1)
                frame: dict = {}
                for line in raw.decode().splitlines():
                    if line and not line.startswith(":"):
                        key, _, value = line.partition(":")
                        frame[key] = (frame.get(key, "") + "\n" if key in frame else "") + value.lstrip()
                if frame:
                    out.append(frame)
                    if until(frame):
                        return out
            if self.ended:
                return out
            message = self.messages.get(timeout=WAIT_S)
            if message["type"] == "done":
                self.ended = True
                continue
            self._take(message)

    def _take(self, message: dict) -> None:
        self.buffer += message.get("body", b"")
        self.raw += message.get("body", b"")
        if not message.get("more_body", False):
            self.ended = True

    def body(self) -> bytes:
        """The whole body of a response that ends (an error answer)."""
        while not self.ended:
            message = self.messages.get(timeout=WAIT_S)
            if message["type"] == "done":
                self.ended = True
            else:
                self._take(message)
        return self.raw

    def close(self) -> None:
        """Hang up, stop the stream hub started on this loop, and stop the loop."""
        from server.contact_centre.stream import HUB

        try:
            self.portal.call(self.gone.set)
            try:
                self.future.result(timeout=WAIT_S)
            except Exception:
                pass
            self.portal.call(HUB.stop)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
