"""create_app(): the Notify simulator as a FastAPI app.

Accepted messages are kept in memory and, with a log file, appended to it as JSON lines and read back
at start-up, so a restarted simulator still knows every message it accepted (the fault tests restart it).
Delivery receipts are POSTed to the receipt URL with the callback bearer token after a short delay and
retried, as Notify retries, until they are answered 2xx.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from notify_simulator.checks import Refused, check_body, check_token, render
from notify_simulator.settings import NotifySimSettings


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_templates(path: str) -> dict[str, dict]:
    """{template id: {type, subject?, body, name}} from the same templates.yaml our service sends by."""
    out = {}
    for name, kinds in yaml.safe_load(Path(path).read_text()).items():
        for kind, t in kinds.items():
            out[t["id"]] = {"type": kind, "name": f"{name} {kind}", "subject": t.get("subject", ""), "body": t["body"]}
    return out


class NotifySim:
    """Messages, per-recipient outcomes, outages and the receipt queue."""

    def __init__(self, settings: NotifySimSettings):
        self.settings = settings
        self.templates = load_templates(settings.templates_file)
        self.messages: list[dict] = []
        self.outcomes: dict[str, str] = {}  # recipient → final status (default delivered)
        self.outage: dict = {"status": 0, "count": 0}
        self.callbacks: list[dict] = []  # every receipt attempt: id, status, answer
        self.queue: asyncio.Queue = asyncio.Queue()
        if settings.log_file and Path(settings.log_file).is_file():
            self.messages = [json.loads(line) for line in Path(settings.log_file).read_text().splitlines() if line]

    def accept(self, kind: str, body: dict, template_id_: str, template: dict, to: str, base: str) -> dict:
        values = body.get("personalisation") or {}
        msg = {"id": str(uuid.uuid4()), "type": kind, "reference": body.get("reference"), "to": to,
               "template_id": template_id_, "template_version": 1, "personalisation": values,
               "body": render(template["body"], values), "subject": render(template["subject"], values),
               "one_click_unsubscribe_url": body.get("one_click_unsubscribe_url"),
               "status": "created", "created_at": _now(), "sent_at": None, "completed_at": None}
        self.messages.append(msg)
        if self.settings.log_file:
            with open(self.settings.log_file, "a") as f:
                f.write(json.dumps(msg) + "\n")
        self.queue.put_nowait(msg["id"])
        content = {"body": msg["body"]}
        if kind == "email":
            content.update(subject=msg["subject"], from_email="kerbside.council@notifications.service.gov.uk",
                           one_click_unsubscribe_url=msg["one_click_unsubscribe_url"])
        else:
            content["from_number"] = "GOVUK"
        return {"id": msg["id"], "reference": msg["reference"], "content": content,
                "uri": f"{base}/v2/notifications/{msg['id']}",
                "template": {"id": template_id_, "version": 1, "uri": f"{base}/services/{self.settings.service_id}"
                                                                     f"/templates/{template_id_}"}}

    def by_id(self, msg_id: str) -> dict | None:
        return next((m for m in self.messages if m["id"] == msg_id), None)

    def receipt(self, msg: dict) -> dict:
        return {"id": msg["id"], "reference": msg["reference"], "to": msg["to"], "status": msg["status"],
                "created_at": msg["created_at"], "completed_at": msg["completed_at"], "sent_at": msg["sent_at"],
                "notification_type": msg["type"], "template_id": msg["template_id"],
                "template_version": msg["template_version"]}


def _public(msg: dict) -> dict:
    """A notification as GET /v2/notifications shows it."""
    out = {k: msg[k] for k in ("id", "reference", "status", "created_at", "sent_at", "completed_at", "body",
                               "subject", "type")}
    out["email_address" if msg["type"] == "email" else "phone_number"] = msg["to"]
    out["template"] = {"id": msg["template_id"], "version": msg["template_version"]}
    return out


async def _deliver_receipt(sim: NotifySim, client: httpx.AsyncClient, msg: dict) -> None:
    """One message's receipt, retried with backoff until answered 2xx (as Notify retries a callback)."""
    await asyncio.sleep(sim.settings.receipt_delay_seconds)
    if msg["status"] == "created":
        msg["status"] = sim.outcomes.get(msg["to"], "delivered")
        msg["sent_at"] = msg["completed_at"] = _now()
    if not sim.settings.receipt_url:
        return
    delay = 0.2
    for _ in range(60):
        answer = None
        with contextlib.suppress(httpx.HTTPError):
            r = await client.post(sim.settings.receipt_url, json=sim.receipt(msg),
                                  headers={"Authorization": f"Bearer {sim.settings.callback_token}"})
            answer = r.status_code
        sim.callbacks.append({"id": msg["id"], "status": msg["status"], "answer": answer})
        if answer is not None and 200 <= answer < 300:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def _send_receipts(sim: NotifySim) -> None:
    # Each receipt on its own task: one callback that keeps failing does not hold back the others.
    pending: set[asyncio.Task] = set()
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            while True:
                msg_id = await sim.queue.get()
                msg = sim.by_id(msg_id)
                if msg is None:
                    continue
                task = asyncio.create_task(_deliver_receipt(sim, client, msg))
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            for task in pending:
                task.cancel()


def create_app(settings: NotifySimSettings) -> FastAPI:
    """The simulator app."""
    sim = NotifySim(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(_send_receipts(sim))
        for m in sim.messages:  # receipts not yet answered before a restart are sent again
            if m["status"] == "created":
                sim.queue.put_nowait(m["id"])
        yield
        task.cancel()

    app = FastAPI(title="GOV.UK Notify simulator", lifespan=lifespan)
    app.state.sim = sim

    def refused(exc: Refused) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    async def _post(kind: str, request: Request):
        try:
            check_token(request.headers.get("authorization"), settings.service_id, settings.secret)
            if sim.outage["count"] > 0:
                sim.outage["count"] -= 1
                status = sim.outage["status"]
                error = "RateLimitError" if status == 429 else "Exception"
                raise Refused(status, error, "Exceeded rate limit for key type LIVE of 3000 requests per 60 seconds"
                              if status == 429 else "Internal server error")
            try:
                body = json.loads(await request.body())
            except ValueError:
                raise Refused(400, "ValidationError", "Invalid JSON supplied in POST data") from None
            template, to = check_body(kind, body, sim.templates)
        except Refused as exc:
            return refused(exc)
        base = str(request.base_url).rstrip("/")
        return JSONResponse(sim.accept(kind, body, body["template_id"], template, to, base), status_code=201)

    @app.post("/v2/notifications/email")
    async def send_email(request: Request):
        return await _post("email", request)

    @app.post("/v2/notifications/sms")
    async def send_sms(request: Request):
        return await _post("sms", request)

    @app.get("/v2/notifications")
    async def list_notifications(request: Request, reference: str | None = None, template_type: str | None = None,
                                 status: str | None = None):
        try:
            check_token(request.headers.get("authorization"), settings.service_id, settings.secret)
        except Refused as exc:
            return refused(exc)
        found = [m for m in reversed(sim.messages) if (reference is None or m["reference"] == reference)
                 and (template_type is None or m["type"] == template_type) and (status is None or m["status"] == status)]
        return {"notifications": [_public(m) for m in found[:250]], "links": {"current": str(request.url)}}

    @app.get("/v2/notifications/{msg_id}")
    async def get_notification(msg_id: str, request: Request):
        try:
            check_token(request.headers.get("authorization"), settings.service_id, settings.secret)
        except Refused as exc:
            return refused(exc)
        msg = sim.by_id(msg_id)
        if msg is None:
            return refused(Refused(404, "NoResultFound", "No result found"))
        return _public(msg)

    @app.get("/_control/messages")
    async def messages():
        return {"messages": sim.messages, "callbacks": sim.callbacks}

    @app.post("/_control/outcome")
    async def outcome(body: dict):
        """{"to": address, "status": "permanent-failure"}: that recipient's messages end so."""
        sim.outcomes[body["to"]] = body["status"]
        return {"outcomes": sim.outcomes}

    @app.post("/_control/outage")
    async def outage(body: dict):
        """{"status": 500 or 429, "count": n}: the next n sends are refused so."""
        sim.outage = {"status": int(body["status"]), "count": int(body["count"])}
        return sim.outage

    @app.post("/_control/resend-receipt/{msg_id}")
    async def resend(msg_id: str):
        """Send a message's receipt again (Notify may deliver a callback twice)."""
        if sim.by_id(msg_id) is None:
            return JSONResponse({"error": "no such message"}, status_code=404)
        sim.queue.put_nowait(msg_id)
        return {"queued": msg_id}

    @app.post("/_control/inbound")
    async def inbound(body: dict):
        """A text from a phone to our number: POSTed to the inbound URL as Notify does."""
        payload = {"id": str(uuid.uuid4()), "source_number": body["source_number"],
                   "destination_number": "07700900000", "content": body["content"], "date_received": _now()}
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.post(settings.inbound_url, json=payload,
                                  headers={"Authorization": f"Bearer {settings.callback_token}"})
        return {"answer": r.status_code}

    @app.post("/_control/reset")
    async def reset():
        sim.messages.clear()
        sim.callbacks.clear()
        sim.outcomes.clear()
        sim.outage = {"status": 0, "count": 0}
        if settings.log_file:
            Path(settings.log_file).write_text("")
        return {"reset": True}

    return app
