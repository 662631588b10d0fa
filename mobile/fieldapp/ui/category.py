"""Choose what to report: large, labelled category buttons from the cached catalogue."""
from __future__ import annotations

from kivy.properties import StringProperty

from .widgets import BigButton, KScreen, load_kv

GROUP_LEVELS = {"Street cleansing": "info", "Enforcement": "warn", "Street lighting": "ok"}


class CategoryScreen(KScreen):
    """A grid of category buttons (two columns, thumb-sized)."""

    message = StringProperty("")

    def __init__(self, **kw):
        super().__init__(name="category", **kw)

    def refresh(self) -> None:
        grid = self.ids.grid
        grid.clear_widgets()
        cats = self.app.core.categories()
        self.message = "" if cats else "No categories on this device yet: connect once to fetch them."
        for cat in cats:
            b = BigButton(text=f"{cat.name}\n[size=14sp]{cat.group}[/size]", markup=True, height="96dp",
                          level=GROUP_LEVELS.get(cat.group, "info"))
            b.code = cat.code
            b.bind(on_release=lambda btn, c=cat: self.app.go("report", category=c))
            grid.add_widget(b)


load_kv(__file__)
