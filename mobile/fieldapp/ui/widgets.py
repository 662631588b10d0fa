"""Shared widgets and colours: thumb-sized buttons, high-contrast text for sunlight, the screen base class."""
from __future__ import annotations

from pathlib import Path

from kivy.app import App
from kivy.lang import Builder
from kivy.lang.builder import global_idmap
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.screenmanager import Screen

LEVEL_COLOURS = {
    "ok": (0.0, 0.42, 0.2, 1),
    "info": (0.0, 0.3, 0.55, 1),
    "warn": (0.8, 0.45, 0.0, 1),
    "error": (0.7, 0.05, 0.05, 1),
    "none": (0.35, 0.35, 0.35, 1),
}
STATE_LEVELS = {"waiting": "warn", "sending": "info", "sent": "ok", "failed": "error"}
global_idmap["LEVELS"] = LEVEL_COLOURS  # kv rules read the colours by level name


def load_kv(py_file: str) -> None:
    """Load the .kv beside a screen module (once)."""
    path = str(Path(py_file).with_suffix(".kv"))
    if path not in Builder.files:
        Builder.load_file(path)


class KScreen(Screen):
    """A screen with a white background; refresh() runs each time it is shown."""

    def on_pre_enter(self, *args) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Re-read what the screen shows."""

    @property
    def app(self):
        """The running FieldApp."""
        return App.get_running_app()


class BigButton(Button):
    """A thumb-sized button (72 dp) with bold text."""

    level = StringProperty("info")


class QuietButton(Button):
    """A secondary action: outlined, still 56 dp tall."""


class Banner(Label):
    """A coloured message strip; empty text hides it."""

    level = StringProperty("info")


class Body(Label):
    """Dark, wrapping body text that sizes itself to its content."""


class Row(ButtonBehavior, BoxLayout):
    """A tappable list row: title, detail and a coloured state label (RecycleView item)."""

    title = StringProperty("")
    detail = StringProperty("")
    state_text = StringProperty("")
    level = StringProperty("info")
    key = StringProperty("")
    index = NumericProperty(0)
    actions = BooleanProperty(False)


load_kv(__file__)
