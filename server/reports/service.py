"""Report intake: one transaction from a device's report to the right job, exactly once."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.orm import Session

from server import events
from server.assets import nearest, snapping
from server.catalogue.answers import AnswerError, priority_for, validate_answers
from server.catalogue.schemas import CategoryDef
from server.catalogue.service import category_or_422, known_category
from server.config import get_settings
from server.deps import Caller, Principal
from server.errors import Conflict, DomainError
from server.jobs import sla
from server.jobs.models import Job, JobEvent
from server.jobs.service import append_event, iso
from server.jobs.transitions import risk_at_for, set_due
from server.metrics import INTAKE_DECLINED
from server.outbox.service import CHANNEL as OUTBOX_CHANNEL
from server.reports.batch import NOTIFY, IntakeBatcher
from server.reports.schemas import ReportIn


def payload_hash(data: ReportIn) -> str:
    """A stable hash of what was reported (the idempotency comparison)."""
    canon = data.model_dump(mode="json")
    return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Sql:
    """A statement of the intake in psycopg's own parameter style, and what to read from its result.

    The intake runs on the driver's connection (psycopg 3, server-side prepared): the same statements from
    the API's async pool (`submit_report_async`) and from a session's connection (`submit_report`).
    """

    text: str
    read: str  # "row": the row (named columns); "json": one JSON text, decoded

    @classmethod
    def of(cls, statement, read: str) -> "Sql":
        return cls(str(statement.compile(dialect=_PSYCOPG)), read)


@dataclass(frozen=True)
class Outcome:
    """How an intake ended: a replay (nothing written) or a written report, perhaps with follow-ups due."""

    answer: dict
    replay: bool = False
    written: dict | None = None
    follow_up: tuple | None = None  # (category, priority, principal, now): _after_attach's arguments


def _steps(who: Principal | Caller, data: ReportIn, channel: str | Callable[..., str], reporter: dict,
           external_id: str | None, on_pool: bool = False) -> Generator[tuple[Sql, dict], object, Outcome]:
    """The intake as its statements: yields (statement, parameters), is sent each result; returns the Outcome.

    Two statements: where the point is (with the replay check, and the token lookup when `who` is a Caller
    still to be judged), then the write (kerbside_intake, migrations 0004-0011: lock, duplicate, job, report with
    its answer, timeline, dispatch, the reporter's contact and its messages, notifications); a third only for
    a report naming its asset. `channel` may be a function of the caller. `on_pool`: for submit_report_async,
    whose connection is in autocommit (the wake-ups come back to be sent after the commit, and an attach that
    needs the ORM's follow-ups is declined before anything is written).
    """
    digest = payload_hash(data)
    category = known_category(data.category)  # None is judged later: a retry is answered first
    params = {**nearest.locate_params(data.lon, data.lat, category.layer if category else None),
              "client_id": data.client_id}
    statement = _LOCATE_OR_REPLAY
    if isinstance(who, Caller):
        statement, params["token_hash"] = _LOCATE_REPLAY_CALLER, who.digest
    row = yield statement, params
    if isinstance(who, Caller):
        who = who.resolve(row.caller)  # 401 / 403 before anything is answered, a replay included
    if callable(channel):
        channel = channel(who)
    if row.replay is not None:
        return Outcome(_replayed(*row.replay, digest), replay=True)
    category = category or category_or_422(data.category)
    try:
        answers = validate_answers(category, data.answers)
    except AnswerError as exc:
        raise DomainError(exc.reason, fields=[exc.field], code="invalid-answer", status=422) from None
    return (yield from _intake(who, data, category, answers, digest, channel, reporter, external_id,
                               nearest.place_from_row(row, category.layer), on_pool))


def _decode(sql: Sql, row):
    """A statement's result from its first row (None when there is none)."""
    return orjson.loads(row[0]) if sql.read == "json" else row


def submit_report(session: Session, who: Principal | Caller, data: ReportIn, channel: str | Callable[..., str],
                  *, reporter: dict | None = None, external_id: str | None = None) -> tuple[int, dict]:
    """Validate, snap, deduplicate, open or attach a job; returns (HTTP status, answer). Commits once.

    On the session's own connection and transaction (the caller may have read before, and may go on after).
    """
    raw = session.connection().connection.driver_connection
    steps = _steps(who, data, channel, reporter or {}, external_id)
    try:
        try:
            sql, params = next(steps)
            while True:
                with raw.cursor(row_factory=namedtuple_row) as cur:
                    cur.execute(sql.text, params, prepare=True)
                    result = _decode(sql, cur.fetchone())
                sql, params = steps.send(result)
        except StopIteration as stop:
            outcome: Outcome = stop.value
        if outcome.replay:
            session.rollback()
            return 200, with_words(outcome.answer)
        answer = outcome.answer
        if outcome.follow_up is not None:
            answer = _after_attach(session, outcome.written, answer, *outcome.follow_up)
        session.commit()
    except psycopg.errors.UniqueViolation:
        # Another request with this client_id won the race: answer as a retry would be answered.
        session.rollback()  # which hands the connection back: the lookup takes the session's next one
        stored = session.execute(_REPLAY_LOOKUP, {"client_id": data.client_id}).scalar_one()
        session.rollback()
        return 200, with_words(_race_replay(stored, data))
    except Exception:
        session.rollback()
        raise
    return 201, with_words(answer)


async def submit_report_async(pool, who: Principal | Caller, data: ReportIn, channel: str | Callable[..., str],
                              batcher: IntakeBatcher | None = None) -> tuple[int, dict] | None:
    """submit_report on a connection of the API's async pool (the busiest write: no thread, no ORM).

    The pool's connections are in autocommit (server/db.py open_async_pool): the first statement only reads,
    and kerbside_intake is one statement, so it is the report's transaction, with no round trips for BEGIN and
    COMMIT. The wake-ups are sent after it, in a statement of their own. None when the report needs the ORM's
    follow-ups (a more severe report raising an open job's priority, or webhooks subscribed to attaches):
    kerbside_intake then writes nothing, and the caller runs submit_report instead.

    With a `batcher`, a report it can take goes first as one statement with the others waiting (group commit,
    server/reports/batch.py); one it declines is taken here as above, as it always was.
    """
    if batcher is not None and isinstance(who, Caller):
        item = _batch_item(who, data, channel)
        if item is not None:
            outcome = await batcher.submit(item)
            if "declined" in outcome:
                INTAKE_DECLINED.labels(outcome["declined"]).inc()
            else:
                who.resolve(outcome["caller"])  # the database found it live for this route; so must we
                written = outcome["written"]
                if written.get("follow_up"):  # nothing was written
                    return None
                return 201, with_words(written["answer"])
    async with pool.connection() as conn:
        steps = _steps(who, data, channel, {}, None, on_pool=True)
        try:
            sql, params = next(steps)
            while True:
                async with conn.cursor(row_factory=namedtuple_row) as cur:
                    await cur.execute(sql.text, params, prepare=True)
                    result = _decode(sql, await cur.fetchone())
                sql, params = steps.send(result)
        except StopIteration as stop:
            outcome: Outcome = stop.value
        except psycopg.errors.UniqueViolation:
            cur = await conn.execute(_REPLAY_ALONE.text, {"client_id": data.client_id})
            return 200, with_words(_race_replay((await cur.fetchone())[0], data))
        if outcome.replay:
            return 200, with_words(outcome.answer)
        if outcome.follow_up is not None:
            return None
        notes = outcome.written.get("notify")
        if notes:
            await conn.execute(NOTIFY, {"notes": _json(notes)}, prepare=True)
    return 201, with_words(outcome.answer)


def _batch_item(who: Caller, data: ReportIn, channel: str | Callable[..., str]) -> str | None:
    """A report's item for kerbside_intake_ready (migration 0022), or None when only the two-statement path can
    take it: a report naming its asset, an unknown category, answers that do not validate (their errors are
    answered there, after the caller is judged).

    Everything that does not hang on the place, the caller or the snapped asset is worked out here as the
    two-statement path works it out; kerbside_intake_ready fills in the rest. The channel is a function of the
    caller's role, so it goes as one per role the route admits.
    """
    category = known_category(data.category)
    if data.asset_ref or category is None:
        return None
    try:
        answers = validate_answers(category, data.answers)
    except AnswerError:
        return None
    now = datetime.now(timezone.utc)
    warnings = _fix_warnings(data, category)
    snap = _SNAP_TO_FILL if category.layer else None
    roles = (*who.roles, "admin")
    channels = {role: channel(Principal(0, "", role)) if callable(channel) else channel for role in roles}
    params = _write_params("", "", None, data, category, answers, priority_for(category, answers), payload_hash(data),
                           "", {}, None, None, None, None, snap, warnings, now, True)
    return _json({"p": params, "lon": data.lon, "lat": data.lat, "srid": get_settings().srid,
                  "layer": category.layer, "client_id": str(data.client_id), "token_hash": who.digest,
                  "roles": list(who.roles), "channels": channels, "radius_m": category.snap_radius_m,
                  "accuracy_m": data.accuracy_m})


# The snap a batched report's parameter is built with: kerbside_intake_ready puts in the asset, distance,
# runner-up and confidence (a batched report is always snapped to the nearest: no hint, no triage).
_SNAP_TO_FILL = snapping.Snap(snapping.Candidate(0, "", 0.0), None, 0.0, "nearest")




def _race_replay(stored, data: ReportIn) -> dict:
    """The answer to a report that lost the race for its client_id to an identical one (or a 409)."""
    if stored is None:  # the unique violation was not the client_id's: not a race this code knows
        raise DomainError("the report could not be stored", code="intake-conflict", status=409)
    return _replayed(*stored, payload_hash(data))


def with_words(answer: dict) -> dict:
    """The answer with the deadline in words, as said when the report arrived (the same on every replay).

    Derived, so not stored: the database fills in the job's deadline when it stores the answer.
    """
    job = answer.get("job") or {}
    due = job.get("due_at")
    words = (sla.describe_due(datetime.fromisoformat(due), datetime.fromisoformat(answer["received_at"]),
                              get_settings().timezone) if due else None)
    return {**answer, "job": {**job, "due_in_words": words}}


# The replay check rides on the locate round trip: a retry costs one statement.
# kerbside_replay (migration 0005) keeps the lookup on its index however few reports there are yet.
_REPLAY = "kerbside_replay(:client_id) AS replay"
_PSYCOPG = psycopg_dialect()
_LOCATE_OR_REPLAY = Sql.of(nearest.locate_statement(_REPLAY), "row")
_LOCATE_REPLAY_CALLER = Sql.of(nearest.locate_statement(f"{_REPLAY}, {Caller.column} AS caller"), "row")
_HINT = Sql.of(nearest.HINT, "row")
_WRITE = Sql.of(text("SELECT CAST(kerbside_intake(CAST(:p AS jsonb)) AS text)"), "json")
_REPLAY_LOOKUP = text("SELECT kerbside_replay(:client_id)")
_REPLAY_ALONE = Sql.of(_REPLAY_LOOKUP, "row")
_STORE_ANSWER = text("UPDATE reports SET response = CAST(:answer AS jsonb) WHERE id = :id")  # after escalation


def _replayed(stored_hash: str, response: dict, digest: str) -> dict:
    if stored_hash != digest:
        raise Conflict("this client_id was already used for a different report", fields=["client_id"],
                       code="idempotency-conflict")
    return response


def _lock_key(*parts: object) -> int:
    """The advisory lock that serialises duplicate checks on one key (held to commit): the first 8 bytes of the
    MD5 of "category:asset", signed, as kerbside_intake_key (migration 0022) computes it for a batched report."""
    return int.from_bytes(hashlib.md5(":".join(map(str, parts)).encode()).digest()[:8], "big", signed=True)


def _intake(who: Principal, data: ReportIn, category: CategoryDef, answers: dict, digest: str, channel: str,
            reporter: dict, external_id: str | None, place: nearest.Place, on_pool: bool = False
            ) -> Generator[tuple[Sql, dict], object, Outcome]:
    now = datetime.now(timezone.utc)
    settings = get_settings()
    if not place.inside:
        raise DomainError(f"the point is outside the {settings.council_name} area", fields=["lat", "lon"],
                          code="out-of-area", status=422)
    warnings = _fix_warnings(data, category)

    snap = None
    layer_name = category.layer
    if layer_name:
        if place.layer_id is None:
            raise DomainError(f"asset layer {layer_name!r} is not loaded", fields=["category"],
                              code="layer-not-loaded", status=503)
        hint = None
        if data.asset_ref:
            hint = nearest.candidate_from_row((yield _HINT, nearest.hint_params(place.layer_id, data.asset_ref,
                                                                                data.lon, data.lat)))
            if hint is None:
                raise DomainError(f"no asset {data.asset_ref!r} on the {layer_name} layer", fields=["asset_ref"],
                                  code="unknown-asset", status=422)
        snap = snapping.choose(place.candidates, category.snap_radius_m, data.accuracy_m, hint)
        if hint is not None and not snap.hint_used:
            warnings.append(f"asset {hint.ref} is {hint.distance_m:.0f} m away, beyond the "
                            f"{category.snap_radius_m:g} m radius; the nearest asset was used instead")
    elif data.asset_ref:
        raise DomainError(f"category {category.code!r} has no asset layer", fields=["asset_ref"],
                          code="unknown-asset", status=422)

    priority = priority_for(category, answers)
    written = yield _WRITE, {"p": _json(_write_params(
        who.actor, who.role, who.token_id, data, category, answers, priority, digest, channel, reporter,
        external_id, place.ewkt, place.ward_id, place.street, snap, warnings, now, on_pool))}
    if written.get("follow_up"):  # declined (on_pool): nothing was written
        return Outcome({}, follow_up=(category, priority, who, now))
    answer = written["answer"]
    if written["attached"] and (_rank(priority) < _rank(answer["job"]["priority"]) or written["subscriptions"]):
        return Outcome(answer, written=written, follow_up=(category, priority, who, now))
    return Outcome(answer, written=written)


def _fix_warnings(data: ReportIn, category: CategoryDef) -> list[str]:
    """What the answer warns of about the fix itself: GPS worse than the category needs, a mock location."""
    warnings: list[str] = []
    if data.accuracy_m is not None and data.accuracy_m > category.max_accuracy_m:
        warnings.append(f"GPS accuracy {data.accuracy_m:.0f} m is worse than the {category.max_accuracy_m:.0f} m "
                        f"this category needs")
    if data.mock_location:
        warnings.append("the device reported a mock location")
    return warnings

def _write_params(actor: str, role: str, token_id: int | None, data: ReportIn, category: CategoryDef,
                  answers: dict, priority: str, digest: str, channel: str, reporter: dict, external_id: str | None,
                  ewkt: str | None, ward_id: int | None, street: str | None, snap: snapping.Snap | None,
                  warnings: list[str], now: datetime, defer: bool) -> dict:
    """kerbside_intake's parameter: the report, its job, timeline, answer and contact, as this report's are to
    be written. The batched path (submit_report_async) builds it before it knows the caller, the place and the
    snapped asset, and kerbside_intake_ready (migration 0022) fills those in."""
    settings = get_settings()
    chosen = snap.chosen if snap else None
    policy = category.sla_for(priority)
    due = sla.due_at(policy, now, tz=settings.timezone, country=settings.holiday_country,
                     subdiv=settings.holiday_subdivision)
    triage = category.layer is not None and chosen is None
    status = "triage" if triage else "new"
    runner = snap.runner_up if snap else None
    return {
        "lock": _lock_key(category.code, chosen.asset_id if chosen else "-"),
        "category": category.code,
        "asset_id": chosen.asset_id if chosen else None,
        "dup_radius_m": category.duplicate_radius_m,
        "dup_since": now - timedelta(hours=category.duplicate_window_hours),
        "geom": ewkt,
        "now": now,
        "actor": actor, "actor_role": role,
        "event_channel": events.CHANNEL, "outbox_channel": OUTBOX_CHANNEL, "defer_notify": defer,
        "defer_follow_up": defer,
        "dispatch": {"destination": "dispatch", "topic": "job.opened"},
        "job": {"asset_id": chosen.asset_id if chosen else None, "ward_id": ward_id, "street": street,
                "priority": priority, "status": status, "triage_reason": snap.reason if triage else None,
                "sla_policy": policy, "due_at": due, "risk_at": risk_at_for(now, due),
                "description": data.description or ""},
        "received_data": {"channel": channel, "client_id": str(data.client_id)},
        "opening_events": _opening_events(actor, role, status, priority, policy, due, category, snap, chosen,
                                          data),
        "answer": _answer(data, channel, category, chosen, snap, warnings, now),
        "report": {
            "client_id": str(data.client_id), "payload_hash": digest, "channel": channel, "lat": data.lat,
            "lon": data.lon, "accuracy_m": data.accuracy_m, "location_provider": data.location_provider,
            "mock_location": data.mock_location, "observed_at": data.observed_at, "asset_hint": data.asset_ref,
            "description": data.description or "", "answers": answers,
            "asset_id": chosen.asset_id if chosen else None,
            "snap_distance_m": chosen.distance_m if chosen else None,
            "runner_up_asset_id": runner.asset_id if runner else None,
            "runner_up_distance_m": runner.distance_m if runner else None,
            "snap_confidence": snap.confidence if snap else None, "ward_id": ward_id,
            "street": street, "token_id": token_id, "reporter": reporter, "external_id": external_id},
        "contact": _contact(data.contact) if data.contact is not None else None,
    }


def _contact(contact) -> dict:
    """kerbside_intake's `contact` member: the reporter's contact and the kinds it chose (kerbside_intake queues
    its "received" messages when there are any). No unsubscribe token: the link is the contact's id, signed."""
    return {"first_name": contact.first_name, "last_name": contact.last_name, "email": contact.email,
            "phone": contact.phone, "notify": contact.notify, "consent": contact.consent,
            "kinds": list(contact.kinds())}


def _json(value) -> str:
    """Compact JSON for a statement parameter (orjson: the intake's parameters are its largest encode;
    datetimes come out as isoformat() writes them)."""
    return orjson.dumps(value).decode()


def _after_attach(session: Session, written: dict, answer: dict, category: CategoryDef, priority: str,
                  who: Principal, now: datetime) -> dict:
    """The attach path's rarer follow-ups, in Python: raising the priority, and CRM webhooks for the attach."""
    from server.contact_centre.webhooks import fan_out  # imports the outbox worker: load it only when needed

    job = session.get(Job, written["job_id"])  # locked by kerbside_intake until commit
    if _rank(priority) < _rank(job.priority):
        _escalate(session, job, category, priority, who, now)
        answer = {**answer, "job": {**answer["job"], "priority": job.priority, "due_at": iso(job.due_at)}}
        session.execute(_STORE_ANSWER, {"answer": _json(answer), "id": written["report_id"]})
    if written["subscriptions"]:
        n = job.demand_count
        fan_out(session, job, JobEvent(id=written["attached_event_id"], job_id=job.id, type=events.REPORT_ATTACHED,
                                       at=now, before={"demand_count": n - 1}, after={"demand_count": n}))
    return answer


_RANKS = {"emergency": 0, "urgent": 1, "normal": 2, "low": 3}


def _rank(priority: str) -> int:
    return _RANKS.get(priority, 9)


def _escalate(session: Session, job: Job, category: CategoryDef, priority: str, who: Principal,
              now: datetime) -> None:
    """A more severe report on an open job raises its priority; the due date only ever moves earlier."""
    s = get_settings()
    policy = category.sla_for(priority)
    due = sla.due_at(policy, now, tz=s.timezone, country=s.holiday_country, subdiv=s.holiday_subdivision)
    before = {"priority": job.priority, "due_at": iso(job.due_at)}
    job.priority, job.sla_policy = priority, policy
    if job.due_at is None or due < job.due_at:
        set_due(job, due)
    append_event(session, job, "priority_raised", who, before=before,
                 after={"priority": job.priority, "due_at": iso(job.due_at)}, notify=False)


def _opening_events(actor, role, status, priority, policy, due, category, snap, chosen, data) -> list[dict]:
    """A new job's timeline after report_received: opened, snapped (or triaged), SLA set."""
    system = "system"
    specs = [dict(type=events.JOB_OPENED, actor=actor, actor_role=role, after={"status": status, "priority": priority},
                  data={"category": category.code}, with_geom=True, notify=False)]
    if snap is not None:
        runner = snap.runner_up
        detail = {"confidence": snap.confidence, "reason": snap.reason, "hint": data.asset_ref,
                  "runner_up": ({"ref": runner.ref, "distance_m": snapping.rounded(runner.distance_m, 1)}
                                if runner else None)}
        if chosen is not None:
            specs.append(dict(type=events.SNAPPED, actor="system:snapping", actor_role=system, notify=False,
                              data={"asset": chosen.ref, "distance_m": snapping.rounded(chosen.distance_m, 1),
                                    **detail}))
        else:
            specs.append(dict(type=events.TRIAGED, actor="system:snapping", actor_role=system, data=detail,
                              notify=False, note=snap.reason))
    specs.append(dict(type=events.SLA_SET, actor="system:sla", actor_role=system, after={"due_at": iso(due)},
                      data={"policy": policy, "priority": priority}, notify=True))
    return specs


def _answer(data, channel, category, chosen, snap, warnings, now) -> dict:
    """The answer, less what kerbside_intake fills in: the report reference and the job's state.

    The asset is the snapped one: a job attached by asset shares it, one attached by radius has none.
    """
    asset = None
    if chosen is not None:
        asset = {"layer": category.layer, "ref": chosen.ref, "distance_m": snapping.rounded(chosen.distance_m, 1),
                 "name": chosen.name}
    return {
        "client_id": str(data.client_id),
        "received_at": iso(now),
        "channel": channel,
        "job": {"category": category.code, "asset": asset},
        "snap": {
            "confidence": snap.confidence if snap else None,
            "reason": snap.reason if snap else None,
            "runner_up": ({"ref": snap.runner_up.ref, "distance_m": snapping.rounded(snap.runner_up.distance_m, 1)}
                          if snap and snap.runner_up else None),
        },
        "warnings": warnings,
    }
