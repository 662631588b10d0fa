"""Place the report's pin: on a map (kivy_garden.mapview) or on a plan that needs no tiles at all.

The plan view draws the GPS fix (with its accuracy circle), nearby assets and the pin, to scale;
tap it or use the nudge buttons. It is the fallback whenever tiles cannot be fetched (offline, no
mapview, tiles switched off); the map view is offered when a tile source is configured.
"""
from __future__ import annotations

import math

from kivy.clock import Clock
from kivy.graphics import Color, Ellipse, Line, Rectangle
from kivy.metrics import dp
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.label import Label
from kivy.uix.stencilview import StencilView

from ..core.models import distance_m, offset
from .widgets import KScreen, load_kv

COUNCIL_OFFICES = (51.3817, -2.3597)  # the Guildhall, Bath: where a pin starts with no fix at all


class PinPlot(StencilView):
    """A to-scale plan around `origin` (60 m across the short side, a grid line every 10 m): no tiles.

    A StencilView, so a far asset or a big accuracy circle is clipped to the plan."""

    origin = ListProperty([0.0, 0.0])
    pin = ListProperty([0.0, 0.0])
    fix = ObjectProperty(None, allownone=True)
    assets = ListProperty([])
    metres_across = NumericProperty(60.0)

    def __init__(self, **kw):
        super().__init__(**kw)
        self._labels: list[Label] = []
        self.bind(pos=self.redraw, size=self.redraw, origin=self.redraw, pin=self.redraw, fix=self.redraw,
                  assets=self.redraw, metres_across=self.redraw)

    def _scale(self) -> float:
        return min(self.width, self.height) / self.metres_across  # px per metre

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        """Widget coordinates of a point."""
        north = (lat - self.origin[0]) * 111_320.0
        east = (lon - self.origin[1]) * 111_320.0 * math.cos(math.radians(self.origin[0]))
        s = self._scale()
        return self.center_x + east * s, self.center_y + north * s

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        """The point under widget coordinates."""
        s = self._scale()
        return offset(self.origin[0], self.origin[1], (y - self.center_y) / s, (x - self.center_x) / s)

    def on_touch_down(self, touch):
        if not self.disabled and self.collide_point(*touch.pos):
            self.pin = list(self.to_latlon(*touch.pos))
            return True
        return super().on_touch_down(touch)

    def redraw(self, *_) -> None:
        """Draw grid, accuracy circle, fix, assets and pin."""
        for lbl in self._labels:
            self.remove_widget(lbl)
        self._labels = []
        self.canvas.clear()
        s = self._scale()
        with self.canvas:
            Color(0.94, 0.95, 0.92, 1)
            Rectangle(pos=self.pos, size=self.size)
            Color(0.8, 0.82, 0.8, 1)
            step = 10 * s  # a line every 10 m, kept inside the plan
            if step > 4:
                n = int(max(self.width, self.height) / step / 2) + 1
                for i in range(-n, n + 1):
                    gx, gy = self.center_x + i * step, self.center_y + i * step
                    if self.x <= gx <= self.right:
                        Line(points=[gx, self.y, gx, self.top], width=1)
                    if self.y <= gy <= self.top:
                        Line(points=[self.x, gy, self.right, gy], width=1)
            if self.fix is not None:
                fx, fy = self.to_xy(self.fix.lat, self.fix.lon)
                r = max(dp(4), (self.fix.accuracy_m or 0) * s)
                Color(0.1, 0.4, 0.9, 0.2)
                Ellipse(pos=(fx - r, fy - r), size=(2 * r, 2 * r))
                Color(0.1, 0.4, 0.9, 1)
                Ellipse(pos=(fx - dp(7), fy - dp(7)), size=(dp(14), dp(14)))
            Color(0.85, 0.5, 0.0, 1)
            for a in self.assets:
                ax, ay = self.to_xy(a.lat, a.lon)
                Rectangle(pos=(ax - dp(8), ay - dp(8)), size=(dp(16), dp(16)))
            px, py = self.to_xy(*self.pin)
            Color(0.8, 0.05, 0.05, 1)
            Line(circle=(px, py, dp(14)), width=dp(2.5))
            Line(points=[px - dp(22), py, px + dp(22), py], width=dp(2))
            Line(points=[px, py - dp(22), px, py + dp(22)], width=dp(2))
        for a in self.assets:
            ax, ay = self.to_xy(a.lat, a.lon)
            if self.collide_point(ax, ay):
                lbl = Label(text=a.ref, color=(0.45, 0.25, 0, 1), font_size="15sp", bold=True, halign="left",
                            valign="middle", size=(dp(120), dp(20)), pos=(ax + dp(12), ay - dp(10)))
                lbl.text_size = lbl.size
                self._labels.append(lbl)
                self.add_widget(lbl)


class PinScreen(KScreen):
    """Move the pin by map, plan, tap or nudge; 'Use this place' hands it back to the report."""

    info = StringProperty("")
    map_mode = BooleanProperty(False)
    map_available = BooleanProperty(False)

    def __init__(self, **kw):
        super().__init__(name="pin", **kw)
        self.draft = None
        self.on_done = None
        self.mapview = None
        self._markers: list = []

    def prepare(self, draft=None, assets=(), on_done=None, **_) -> None:
        """Start at the draft's position (or the GPS fix, or the council offices)."""
        self.draft, self.on_done = draft, on_done
        start = (draft.position() if draft else None) or COUNCIL_OFFICES
        plot = self.ids.plot
        plot.origin = list(start)
        plot.pin = list(start)
        plot.fix = draft.fix if draft else None
        plot.assets = list(assets)
        self.map_available = bool(self.app.map_tiles) and _mapview_importable()
        self._hide_map()
        self._sync_info()
        plot.bind(pin=lambda *a: self._sync_info())

    def _sync_info(self) -> None:
        lat, lon = self.current()
        fix = self.draft.fix if self.draft else None
        gap = f" · {distance_m(lat, lon, fix.lat, fix.lon):.0f} m from the GPS fix" if fix else ""
        self.info = f"Pin at {lat:.5f}, {lon:.5f}{gap}"

    def current(self) -> tuple[float, float]:
        """The pin's position in whichever view is showing."""
        if self.map_mode and self.mapview is not None:
            return self.mapview.lat, self.mapview.lon
        return tuple(self.ids.plot.pin)

    def nudge(self, north_m: float, east_m: float) -> None:
        """Move the pin a few metres."""
        lat, lon = offset(*self.current(), north_m, east_m)
        self.ids.plot.pin = [lat, lon]
        if self.map_mode and self.mapview is not None:
            self.mapview.center_on(lat, lon)
        self._sync_info()

    def toggle_map(self) -> None:
        """Switch between the map (tiles) and the plan (no tiles needed)."""
        if not self.map_available:
            return
        if self.map_mode:
            self.ids.plot.pin = list(self.current())
            self._hide_map()
        else:
            self._show_map()
            self.map_mode = True
        self._sync_info()

    def _show_map(self) -> None:
        from kivy_garden.mapview import MapMarker, MapSource, MapView

        lat, lon = self.ids.plot.pin
        if self.mapview is None:
            tiles = self.app.data_dir / "tiles"
            tiles.mkdir(parents=True, exist_ok=True)
            source = MapSource(url=self.app.map_tiles, cache_key="kerbside", max_zoom=19, tile_size=256,
                               attribution="© OpenStreetMap contributors", cache_dir=str(tiles))
            self.mapview = MapView(lat=lat, lon=lon, zoom=18, map_source=source, cache_dir=str(tiles))
            self.mapview.bind(on_map_relocated=lambda *a: self._sync_info())
            self._frame = StencilView(pos_hint={"x": 0, "y": 0})  # tiles never spill over the buttons
            self._frame.bind(pos=self._fit_map, size=self._fit_map)
            self._frame.add_widget(self.mapview)
        if self._frame.parent is None:
            self.ids.map_holder.add_widget(self._frame, index=1)  # above the plan, under the crosshair
            self._fit_map()
        for m in self._markers:
            self.mapview.remove_marker(m)
        self._markers = [MapMarker(lat=a.lat, lon=a.lon) for a in self.ids.plot.assets]
        for m in self._markers:
            self.mapview.add_marker(m)
        self.mapview.center_on(lat, lon)
        Clock.schedule_once(lambda dt: self.mapview.center_on(lat, lon), 0)  # again, once laid out

    def _fit_map(self, *_) -> None:
        self.mapview.pos, self.mapview.size = self._frame.pos, self._frame.size

    def _hide_map(self) -> None:
        self.map_mode = False
        if self.mapview is not None and self._frame.parent is not None:
            self._frame.parent.remove_widget(self._frame)

    def use(self) -> None:
        """Hand the pin back to the report."""
        lat, lon = self.current()
        if self.on_done is not None:
            self.on_done(lat, lon, "map" if self.map_mode else "manual")
        self.app.go("report")


def _mapview_importable() -> bool:
    try:
        import kivy_garden.mapview  # noqa: F401
    except Exception:  # missing, or broken on this platform: the plan view does the job
        return False
    return True


load_kv(__file__)
