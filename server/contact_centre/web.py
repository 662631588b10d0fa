"""The dashboard's files: our pages under /dashboard, Leaflet's dist files straight from node_modules."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from server.config import REPO_ROOT, get_settings

STATIC = Path(__file__).resolve().parent / "static"
LEAFLET = REPO_ROOT / "node_modules" / "leaflet" / "dist"


def _csp() -> str:
    # No inline script anywhere: a stray piece of user text can never run. Tiles are the only outside host.
    tiles = get_settings().map_tiles_url
    origin = ""
    if tiles:
        parts = urlsplit(tiles)
        origin = f" {parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""
    return ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data: blob:{origin}; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'self'")


class DashboardFiles(StaticFiles):
    """Static files with security headers (CSP without inline script, no framing, no sniffing)."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers["Content-Security-Policy"] = _csp()
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-cache"
        return response


def mount(app: FastAPI) -> None:
    """Mount Leaflet (installed by `npm ci` at set-up; the map says so if it is missing) and the pages."""
    app.mount("/dashboard/vendor/leaflet", DashboardFiles(directory=LEAFLET, check_dir=False), name="leaflet")
    app.mount("/dashboard", DashboardFiles(directory=STATIC, html=True), name="dashboard")

    @app.get("/dashboard", include_in_schema=False)
    def _dashboard_root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")
