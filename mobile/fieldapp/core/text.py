"""Words for the screens: dates, ages, queue item summaries (pure)."""
from __future__ import annotations

import time
from datetime import datetime

from .models import FAILED, JOB_STATUS, SENDING, SENT, WAITING, QueueItem

STATE_WORDS = {WAITING: "Waiting", SENDING: "Sending", SENT: "Sent", FAILED: "Failed"}
MOVE_WORDS = {"accepted": "Accept", "in_progress": "Start", "completed": "Complete", "on_hold": "Put on hold"}


def when(iso: str | None) -> str:
    """'Fri 4 Dec 17:30' in the device's time zone (or '' for none)."""
    if not iso:
        return ""
    try:
        dt = datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return iso
    return f"{dt:%a} {dt.day} {dt:%b %H:%M}"


def ago(epoch: float | None, now: float | None = None) -> str:
    """'just now', '5 min ago', '3 h ago'."""
    if not epoch:
        return "never"
    s = max(0.0, (now or time.time()) - epoch)
    if s < 60:
        return "just now"
    if s < 3600:
        return f"{s / 60:.0f} min ago"
    if s < 86400 * 2:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} days ago"


def item_title(item: QueueItem, category_name: str | None = None) -> str:
    """What the queue row is about."""
    if item.kind == JOB_STATUS:
        move = MOVE_WORDS.get(item.payload.get("status"), item.payload.get("status", "?"))
        return f"{move} job {item.target}"
    name = category_name or item.payload.get("category", "report")
    return f"{name} report"


def item_detail(item: QueueItem, now: float | None = None) -> str:
    """The second line of a queue row: references and due date, the reason, or when it will be tried."""
    now = now or time.time()
    photos = f" · {len(item.photos)} photo{'s' if len(item.photos) != 1 else ''}" if item.photos else ""
    if item.state == SENT:
        if item.kind == JOB_STATUS:
            return f"Sent{photos}"
        due = when(item.due_at)
        return f"{item.reference} · job {item.job_reference}" + (f" · due {due}" if due else "") + photos
    if item.state == FAILED:
        return f"Refused: {item.last_error or 'no reason given'}" + (f" ({item.reference} was received)"
                                                                     if item.reference else "")
    if item.state == SENDING:
        return f"Sending now{photos}"
    if item.attempts and item.next_attempt_at > now:
        return f"Try {item.attempts + 1} in {item.next_attempt_at - now:.0f} s: {item.last_error}"
    return f"Saved on the device {ago(item.created_at, now)}{photos}"
