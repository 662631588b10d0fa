"""Start the Kerbside field app: `python -m mobile.main` on a desktop (fake GPS and camera), main.py on Android."""
from __future__ import annotations

import os

os.environ.setdefault("KIVY_NO_ARGS", "1")  # our options are environment variables, not Kivy's argv


def main() -> None:
    """Size the window on a desktop, then run the app."""
    try:
        from .fieldapp.device.factory import on_android
    except ImportError:  # run as a script (Android, or `python mobile/main.py`)
        from fieldapp.device.factory import on_android
    if not on_android():
        from kivy.config import Config

        width, height = os.environ.get("KERBSIDE_WINDOW", "480x854").split("x")
        Config.set("graphics", "width", width)
        Config.set("graphics", "height", height)
        Config.set("input", "mouse", "mouse,disable_multitouch")  # right-click would leave red dots
    try:
        from .fieldapp.ui.app import FieldApp
    except ImportError:
        from fieldapp.ui.app import FieldApp
    FieldApp().run()


if __name__ == "__main__":
    main()
