"""Crew mode, "Today": the day plan's stops in order, the next one on a map, Arrive and Open per stop."""
from __future__ import annotations

from kivy.clock import Clock
from kivy.properties import DictProperty, ListProperty, StringProperty
from kivy.uix.stencilview import StencilView

from ..core.crew import CrewError, can_start, effective_status
from ..core.text import ago, when
from .widgets import KScreen, load_kv

LEVELS = {"assigned": "warn", "accepted": "info", "in_progress": "info", "on_hold": "warn", "completed": "ok"}


def _clock(iso: str | None) -> str:
    """HH:MM of an ISO time (the server's times carry the council's offset)."""
    return iso[11:16] if iso and len(iso) >= 16 else "?"


class TodayScreen(KScreen):
    """Today's stops from the server (or the device's copy when offline); the next stop first."""

    rows = ListProperty([])
    message = StringProperty("")
    next_stop = DictProperty({})
    next_text = StringProperty("")

    def __init__(self, **kw):
        super().__init__(name="today", **kw)
        self.mapview = None
        self._marker = None
        self._frame = None

    def refresh(self) -> None:
        if not getattr(self, "_watching", False):  # a move sent (or failed) changes a stop's status
            self.app.bind(counts=lambda *_: self.show() if self.manager and self.manager.current == self.name
                          else None)
            self._watching = True
        self.show()
        self.reload()

    def show(self) -> None:
        """Draw the cached plan, with any queued moves applied to the stops' statuses."""
        core = self.app.core
        plan, _ = core.today_plan()
        stops = (plan or {}).get("stops") or []
        rows, nxt = [], None
        for s in stops:
            status, pending = effective_status(core.outbox, {"reference": s["job"], "status": s["status"]})
            if nxt is None and status in ("assigned", "accepted", "in_progress"):
                nxt = {**s, "status": status}
            rows.append({"title": f"{s['seq']}. {s['job']} · {s['category'].replace('_', ' ')}",
                         "detail": f"{_clock(s['arrive_at'])}–{_clock(s['depart_at'])} · {s.get('street') or ''}"
                                   + (" · late for its due time" if s.get("late") else "")
                                   + (" · change waiting to send" if pending else ""),
                         "state_text": status.replace("_", " "), "level": LEVELS.get(status, "none"),
                         "key": s["job"]})
        self.rows = rows
        self.next_stop = nxt or {}
        if nxt:
            self.next_text = (f"Next: {nxt['job']} · {nxt['category'].replace('_', ' ')} at "
                              f"{nxt.get('street') or 'the pin'}, {_clock(nxt['arrive_at'])} "
                              f"({nxt['status'].replace('_', ' ')})")
        else:
            self.next_text = "No stop left today." if stops else "No plan for your crew today."
        Clock.schedule_once(lambda dt: self._show_map(), 0)

    def reload(self) -> None:
        """Fetch today's plan in the background."""
        self.message = "Refreshing…"
        self.app.tasks.run(self.app.core.refresh_plan, self._done, self._failed)

    def _done(self, plan: dict) -> None:
        n = len(plan.get("stops") or [])
        self.message = (f"{n} stop{'s' if n != 1 else ''} today (plan version {plan.get('version')}), "
                        f"back at the depot by {_clock(plan.get('end_at'))}." if n else
                        "No stops planned for your crew today.")
        self.show()

    def _failed(self, exc: Exception) -> None:
        _, fetched = self.app.core.today_plan()
        self.message = (f"Offline ({getattr(exc, 'message', exc)}): the plan is from {ago(fetched)}."
                        if fetched else f"Could not fetch today's plan: {getattr(exc, 'message', exc)}")

    def arrive(self) -> None:
        """At the next stop: start its job (queued, so it works offline; the server then keeps the stop fixed)."""
        s = self.next_stop
        if not s:
            return
        job = {"reference": s["job"], "status": s["status"]}
        status, _ = effective_status(self.app.core.outbox, job)
        if not can_start(status):
            self.message = f"{s['job']} is already {status.replace('_', ' ')}: open it to complete it."
            return
        try:
            self.app.core.start_job(job, self.app.fix)
        except CrewError as exc:
            self.message = str(exc)
            return
        self.message = f"Arrived at {s['job']}: started (due {when(s.get('due_at'))})."
        self.show()

    def open_next(self) -> None:
        """The next stop's job page (photo and completion)."""
        if self.next_stop:
            self.app.go("job", reference=self.next_stop["job"])

    def _show_map(self) -> None:
        """The next stop on a map (kivy_garden.mapview) when a tile source is configured."""
        s = self.next_stop
        if not s or not self.app.map_tiles:
            return
        try:
            from kivy_garden.mapview import MapMarker, MapSource, MapView
        except ImportError:
            return
        if self.mapview is None:
            tiles = self.app.data_dir / "tiles"
            tiles.mkdir(parents=True, exist_ok=True)
            source = MapSource(url=self.app.map_tiles, cache_key="kerbside", max_zoom=19, tile_size=256,
                               attribution="© OpenStreetMap contributors", cache_dir=str(tiles))
            self.mapview = MapView(lat=s["lat"], lon=s["lon"], zoom=16, map_source=source, cache_dir=str(tiles))
            self._frame = StencilView(pos_hint={"x": 0, "y": 0})
            self._frame.bind(pos=self._fit, size=self._fit)
            self._frame.add_widget(self.mapview)
            self.ids.map_holder.add_widget(self._frame)
        if self._marker is not None:
            self.mapview.remove_marker(self._marker)
        self._marker = MapMarker(lat=s["lat"], lon=s["lon"])
        self.mapview.add_marker(self._marker)
        self.mapview.center_on(s["lat"], s["lon"])

    def _fit(self, *_) -> None:
        self.mapview.pos, self.mapview.size = self._frame.pos, self._frame.size


load_kv(__file__)
