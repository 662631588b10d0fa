"""Sign in once: the server address and a token; the app stays signed in until the token is refused."""
from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty

from .widgets import KScreen, load_kv


class SignInScreen(KScreen):
    """Server URL + token, checked against the server before they are kept."""

    message = StringProperty("")
    busy = BooleanProperty(False)

    def __init__(self, **kw):
        super().__init__(name="signin", **kw)

    def refresh(self) -> None:
        core = self.app.core
        if core.server_url and not self.ids.url.text:
            self.ids.url.text = core.server_url
        waiting = core.outbox.counts().get("waiting", 0)
        self.ids.queued.text = (f"{waiting} item{'s' if waiting != 1 else ''} on this device will be sent "
                                "once you are signed in." if waiting else "")

    def submit(self) -> None:
        """Check the address and token in the background."""
        if self.busy:
            return
        self.busy, self.message = True, "Checking the server…"
        url, token = self.ids.url.text, self.ids.token.text
        self.app.tasks.run(lambda: self.app.core.sign_in(url, token), self._done, self._failed)

    def _done(self, account) -> None:
        self.busy, self.message = False, ""
        self.ids.token.text = ""
        self.app.sync_text = ""
        self.app.go("home")

    def _failed(self, exc: Exception) -> None:
        self.busy, self.message = False, str(exc)


load_kv(__file__)
