"""The report screen: GPS badge, nearby assets or a pin, the category's questions, photos, send."""
from __future__ import annotations

import uuid
from pathlib import Path

from kivy.clock import Clock
from kivy.factory import Factory
from kivy.metrics import dp
from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.image import Image
from kivy.uix.textinput import TextInput
from kivy.uix.togglebutton import ToggleButton

from ..core.gps import quality
from ..core.models import Asset, distance_m
from ..core.reports import Draft
from ..core.service import DraftError
from .widgets import KScreen, load_kv


def _toggle(text: str, group: str | None = None, **kw) -> ToggleButton:
    return ToggleButton(text=text, group=group, allow_no_selection=group is None, size_hint_y=None, height=dp(56),
                        font_size="18sp", background_normal="", background_down="",
                        background_color=(0.85, 0.88, 0.92, 1), color=(0.05, 0.1, 0.2, 1), **kw)


def _paint(toggle: ToggleButton, *_) -> None:
    chosen = toggle.state == "down"
    toggle.background_color = (0.0, 0.3, 0.55, 1) if chosen else (0.85, 0.88, 0.92, 1)
    toggle.color = (1, 1, 1, 1) if chosen else (0.05, 0.1, 0.2, 1)


class ReportScreen(KScreen):
    """One report being written (a Draft) until it is saved to the outbox."""

    title = StringProperty("")
    gps_text = StringProperty("")
    gps_level = StringProperty("none")
    gps_warnings = StringProperty("")
    location_text = StringProperty("")
    has_layer = BooleanProperty(False)
    assets_text = StringProperty("")
    photos_text = StringProperty("No photos yet")
    message = StringProperty("")
    message_level = StringProperty("error")

    def __init__(self, **kw):
        super().__init__(name="report", **kw)
        self.draft: Draft | None = None
        self.assets: list[Asset] = []
        self.assets_source = ""
        self.choices: dict[str, dict[str, ToggleButton]] = {}
        self.fields: dict[str, TextInput] = {}
        self.errors: dict[str, object] = {}
        self.asset_buttons: dict[str | None, ToggleButton] = {}
        self._ticker = None

    def on_kv_post(self, base_widget) -> None:
        self.app.bind(fix=self._on_fix)

    # -- lifecycle ----------------------------------------------------------------------------
    def prepare(self, category=None, **_) -> None:
        """Start a new draft for a category (keeps the current draft when called without one)."""
        if category is None:
            return
        self.draft = Draft(category, fix=self.app.fix)
        self.assets, self.assets_source, self.message = [], "", ""
        self.title = category.name
        self.has_layer = bool(category.layer)
        self.ids.description.text = ""
        self._build_form()
        self._show_photos()
        self._fetch_assets()

    def refresh(self) -> None:
        if self.draft is None:
            return
        self._update_location()
        if self.draft.category.removed:
            self.message_level = "warn"
            self.message = ("The server no longer offers this category. You can still save the report; "
                            "it stays on the device if the server refuses it.")

    def on_enter(self, *args) -> None:
        self._ticker = Clock.schedule_interval(lambda dt: self._update_location(), 1.0)

    def on_leave(self, *args) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    # -- location -----------------------------------------------------------------------------
    def _on_fix(self, app, fix) -> None:
        if self.draft is None or fix is None:
            return
        first = self.draft.fix is None
        self.draft.fix = fix
        self._update_location()
        if first and self.draft.pin is None:
            self._fetch_assets()

    def _update_location(self) -> None:
        d = self.draft
        if d is None:
            return
        q = quality(d.fix, d.category)
        self.gps_text = q.badge
        self.gps_level = {"good": "ok", "poor": "warn"}.get(q.level, "none")
        self.gps_warnings = "\n".join(q.warnings)
        where = d.position()
        if where is None:
            self.location_text = "No position yet."
        elif d.pin is not None:
            gap = f", {distance_m(*where, d.fix.lat, d.fix.lon):.0f} m from the GPS fix" if d.fix else ""
            self.location_text = f"Pin placed by hand at {where[0]:.5f}, {where[1]:.5f}{gap}."
        else:
            self.location_text = f"At the GPS fix: {where[0]:.5f}, {where[1]:.5f}."

    def adjust_pin(self) -> None:
        """Open the pin screen at the current position."""
        if self.draft.position() is None:
            self.message_level, self.message = "warn", "No position yet: the pin starts at the council offices."
        self.app.go("pin", draft=self.draft, assets=self.assets, on_done=self._pin_done)

    def _pin_done(self, lat: float, lon: float, source: str) -> None:
        self.draft.pin, self.draft.pin_source = (lat, lon), source
        self._update_location()
        self._fetch_assets()

    def use_gps(self) -> None:
        """Drop the hand-placed pin and use the GPS fix."""
        self.draft.pin = None
        self._update_location()
        self._fetch_assets()

    # -- assets -------------------------------------------------------------------------------
    def _fetch_assets(self) -> None:
        d = self.draft
        where = d.position() if d else None
        if not d or not d.category.layer:
            return
        if where is None:
            self.assets_text = "Waiting for a position to look for nearby assets."
            return
        self.assets_text = "Looking for nearby assets…"
        self.app.tasks.run(lambda: self.app.core.nearby_assets(d.category, *where), self._show_assets,
                           lambda e: setattr(self, "assets_text", f"Could not list assets: {e}"))

    def _show_assets(self, found) -> None:
        self.assets, self.assets_source = found
        box = self.ids.assets
        box.clear_widgets()
        self.asset_buttons = {}
        layer = self.draft.category.layer.replace("_", " ")
        where = "from the server" if self.assets_source == "server" else "from this device's cache (offline)"
        self.assets_text = (f"Nearest {layer} {where}. Pick the one you mean, or let the server choose."
                            if self.assets else f"No {layer} known nearby ({where}); the server will check.")
        options: list[Asset | None] = [None, *self.assets[:6]]
        for asset in options:
            text = "Let the server choose the nearest" if asset is None else \
                f"{asset.ref}  ·  {asset.distance_m:.0f} m  ·  {(asset.name or '')[:38]}"
            t = _toggle(text, group="asset", shorten=True, text_size=(None, None))
            t.bind(size=lambda w, s: setattr(w, "text_size", (s[0] - dp(16), None)), state=_paint)
            t.bind(on_release=lambda w, a=asset: self.choose_asset(a))
            if (asset is None and self.draft.asset is None) or (asset and self.draft.asset
                                                                  and asset.ref == self.draft.asset.ref):
                t.state = "down"
            _paint(t)
            self.asset_buttons[asset.ref if asset else None] = t
            box.add_widget(t)

    def choose_asset(self, asset: Asset | None) -> None:
        """Name an asset on the report (the server checks it is near)."""
        self.draft.asset = asset
        for ref, t in self.asset_buttons.items():
            t.state = "down" if ref == (asset.ref if asset else None) else "normal"

    # -- questions ----------------------------------------------------------------------------
    def _build_form(self) -> None:
        form = self.ids.form
        form.clear_widgets()
        self.choices, self.fields, self.errors = {}, {}, {}
        for q in self.draft.category.questions:
            form.add_widget(Factory.Body(text=f"[b]{q.prompt}[/b]" + (" *" if q.required else "")))
            if q.datatype in ("singlevaluelist", "multivaluelist"):
                single = q.datatype == "singlevaluelist"
                row = BoxLayout(orientation="vertical" if len(q.values) > 3 else "horizontal", spacing=dp(6),
                                size_hint_y=None)
                row.height = (dp(62) * len(q.values)) if len(q.values) > 3 else dp(56)
                self.choices[q.code] = {}
                for key, name in q.values:
                    t = _toggle(name, group=f"q-{q.code}" if single else None)
                    t.bind(state=_paint, on_release=lambda *a, c=q.code: self._clear_error(c))
                    self.choices[q.code][key] = t
                    row.add_widget(t)
                form.add_widget(row)
            else:
                multiline = q.datatype == "text"
                field = Factory.Field(multiline=multiline, height=dp(110) if multiline else dp(56),
                                      input_filter="float" if q.datatype == "number" else None,
                                      hint_text="2026-11-26T10:00+00:00" if q.datatype == "datetime" else "")
                self.fields[q.code] = field
                form.add_widget(field)
            err = Factory.Body(text="", color=(0.7, 0.05, 0.05, 1))
            self.errors[q.code] = err
            form.add_widget(err)

    def _clear_error(self, code: str) -> None:
        if code in self.errors:
            self.errors[code].text = ""
        if self.message_level == "error":
            self.message = ""

    def answers(self) -> dict:
        """The answers as typed and tapped."""
        out: dict = {}
        for q in self.draft.category.questions:
            if q.code in self.choices:
                chosen = [k for k, t in self.choices[q.code].items() if t.state == "down"]
                out[q.code] = (chosen[0] if chosen else None) if q.datatype == "singlevaluelist" else chosen
            else:
                out[q.code] = self.fields[q.code].text
        return out

    # -- photos -------------------------------------------------------------------------------
    def take_photo(self) -> None:
        """Ask the camera for a photo; it is copied (and downscaled if big) into the app's store."""
        raw = Path(self.app.core.store.photo_dir) / f"raw-{uuid.uuid4()}.jpg"
        self.photos_text = "Taking a photo…"
        self.app.camera.take(str(raw), lambda path: Clock.schedule_once(lambda dt: self._photo_taken(path)))

    def _photo_taken(self, path: str | None) -> None:
        if path is None:
            self.photos_text = "No photo taken."
            return

        def keep() -> str:
            kept = self.app.core.add_photo(path)
            Path(path).unlink(missing_ok=True)
            return kept
        self.app.tasks.run(keep, self._photo_kept, lambda e: setattr(self, "photos_text", f"Photo not usable: {e}"))

    def _photo_kept(self, path: str) -> None:
        self.draft.photos.append(path)
        self._show_photos()

    def _show_photos(self) -> None:
        box = self.ids.thumbs
        box.clear_widgets()
        for p in self.draft.photos:
            box.add_widget(Image(source=p, size_hint_x=None, width=dp(150), fit_mode="contain"))
        n = len(self.draft.photos)
        self.photos_text = f"{n} photo{'s' if n != 1 else ''}" if n else "No photos yet"

    # -- send ---------------------------------------------------------------------------------
    def send(self) -> None:
        """Save the report on the device (outbox) and let the sync loop send it."""
        self.draft.answers = self.answers()
        self.draft.description = self.ids.description.text
        for err in self.errors.values():
            err.text = ""
        try:
            item = self.app.core.queue_report(self.draft)
        except DraftError as exc:
            for field, text in exc.errors.items():
                code = field.split(".", 1)[-1]
                if code in self.errors:
                    self.errors[code].text = text
            self.message_level = "error"
            self.message = "Check the form: " + "; ".join(f"{k.split('.')[-1]}: {v}" for k, v in exc.errors.items())
            return
        self.draft = None
        self.app.screen("queue").flash = f"Saved on the device; sending {item.payload['category']} report…"
        self.app.go("queue")


load_kv(__file__)
