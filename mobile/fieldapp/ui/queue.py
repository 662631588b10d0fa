"""The queue: every report and crew move on the device — waiting, sending, sent (job ref, due date) or
failed (the server's reason) — with retry and delete-draft for the unsent ones."""
from __future__ import annotations

from kivy.properties import ListProperty, NumericProperty, StringProperty

from ..core.models import FAILED, REPORT, WAITING
from ..core.text import STATE_WORDS, item_detail, item_title
from .widgets import STATE_LEVELS, KScreen, load_kv

SHOWN = 150  # newest items listed; older sent ones are history


class QueueScreen(KScreen):
    """A list of queue items; tap one to choose Retry or Delete."""

    rows = ListProperty([])
    flash = StringProperty("")
    summary = StringProperty("")
    selected = NumericProperty(0)
    selected_text = StringProperty("")
    selected_state = StringProperty("")

    def __init__(self, **kw):
        super().__init__(name="queue", **kw)

    def refresh(self) -> None:
        core = self.app.core
        cats = {c.code: c for c in core.cache.categories(include_removed=True)}
        rows = []
        for item in core.outbox.items()[:SHOWN]:
            cat = cats.get(item.payload.get("category")) if item.kind == REPORT else None
            detail = item_detail(item)
            if cat is not None and cat.removed and item.state in (WAITING, FAILED):
                detail = f"The server no longer offers '{cat.name}'. " + detail
            elif item.state == WAITING and core.outbox.blocked(item):
                detail = f"Waits for the earlier change to job {item.target} to be sent."
            rows.append({"title": item_title(item, cat.name if cat else None), "detail": detail,
                         "state_text": STATE_WORDS[item.state], "level": STATE_LEVELS[item.state],
                         "key": str(item.id)})
        self.rows = rows
        c = core.outbox.counts()
        self.summary = (f"{c['waiting'] + c['sending']} waiting · {c['sent']} sent · {c['failed']} failed")
        if self.selected and not any(r["key"] == str(self.selected) for r in rows):
            self.select(0)
        elif self.selected:
            self.select(self.selected)

    def on_leave(self, *args) -> None:
        self.flash = ""

    def select(self, item_id: int) -> None:
        """Show the actions for one item."""
        item = self.app.core.outbox.get(item_id) if item_id else None
        self.selected = item.id if item else 0
        self.selected_state = item.state if item else ""
        self.selected_text = (f"{item_title(item)}: {STATE_WORDS[item.state]}. {item_detail(item)}" if item else "")

    def retry(self) -> None:
        """Send the selected item again now."""
        if self.selected and self.app.core.outbox.retry(self.selected):
            self.flash = "Trying again now."
            self.app.kick_sync()
        self.refresh()

    def delete(self) -> None:
        """Delete the selected unsent item (a draft) from the device."""
        if self.selected and self.app.core.outbox.delete(self.selected):
            self.flash = "Deleted from the device."
            self.select(0)
        self.refresh()

    def send_now(self) -> None:
        """Try everything waiting now, whatever the backoff says."""
        n = self.app.core.outbox.retry_all_now()
        self.flash = f"Trying {n} waiting item{'s' if n != 1 else ''} now." if n else "Nothing is waiting."
        self.app.kick_sync()


load_kv(__file__)
