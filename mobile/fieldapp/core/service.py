"""FieldCore: the app's use cases over the store, the outbox, the API and the sync loop (no UI)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from . import crew, photos
from .account import Account, sign_in
from .api import Api, ApiError, Refused
from .cache import Cache
from .models import REPORT, SENT, Asset, Category, Fix, QueueItem
from .outbox import BACKOFF_BASE, BACKOFF_CAP, Outbox
from .reports import Draft, build_payload
from .store import Store
from .sync import Sync, SyncLoop, SyncStatus


class DraftError(ValueError):
    """The draft cannot be queued yet; `errors` maps fields to what is missing."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class FieldCore:
    """Everything the screens need, usable from tests without Kivy."""

    def __init__(self, data_dir: str | Path, *, notify: Callable[[SyncStatus], None] | None = None,
                 backoff: tuple[float, float] = (BACKOFF_BASE, BACKOFF_CAP),
                 transport: httpx.BaseTransport | None = None):
        self.store = Store(data_dir)
        self.outbox = Outbox(self.store, *backoff)
        self.cache = Cache(self.store)
        self.transport = transport
        self._api: Api | None = None
        self._api_key: tuple[str, str] | None = None
        self._api_lock = threading.Lock()
        self.sync = Sync(self.outbox, self.api, on_sent=self._sent)
        self.loop = SyncLoop(self.sync, notify)

    # -- account ------------------------------------------------------------------------------
    @property
    def server_url(self) -> str | None:
        """The server signed in to (kept after sign-out, to fill the form)."""
        return self.store.get("server_url")

    @property
    def role(self) -> str | None:
        """'crew' or 'reporter' while signed in."""
        return self.store.get("role") if self.signed_in else None

    @property
    def signed_in(self) -> bool:
        """Whether a token is stored."""
        return bool(self.store.get("token"))

    def api(self) -> Api | None:
        """The client for the stored server and token (None when signed out)."""
        url, token = self.store.get("server_url"), self.store.get("token")
        if not url or not token:
            return None
        with self._api_lock:
            if self._api_key != (url, token):
                if self._api is not None:
                    self._api.close()
                self._api, self._api_key = Api(url, token, transport=self.transport), (url, token)
            return self._api

    def sign_in(self, url: str, token: str) -> Account:
        """Check and store the address and token (raises SignInError); the queue carries on with it."""
        account = sign_in(url, token, transport=self.transport)
        self.store.set(server_url=account.server_url, token=account.token, role=account.role)
        self.cache.save_categories(account.categories)
        self.sync.resume()
        self.loop.kick()
        return account

    def sign_out(self) -> None:
        """Forget the token; the queue and caches stay on the device."""
        self.store.set(token=None, role=None)

    # -- reporting ----------------------------------------------------------------------------
    def refresh_categories(self) -> list[str]:
        """Fetch the catalogue; returns codes the server no longer offers (drafts that use them are kept)."""
        api = self._need_api()
        return self.cache.save_categories(api.categories())

    def categories(self) -> list[Category]:
        """The cached catalogue (works offline)."""
        return self.cache.categories()

    def nearby_assets(self, category: Category, lat: float, lon: float) -> tuple[list[Asset], str]:
        """(assets of the category's layer near the point, 'server' or 'cache'); falls back to the cache offline."""
        if not category.layer:
            return [], "none"
        radius = max(60.0, category.snap_radius_m * 4)
        api = self.api()
        if api is not None:
            try:
                found = [a for a in api.assets_near(category.layer, lat, lon, radius) if a.distance_m <= radius]
                self.cache.save_assets(found)
                return found[:20], "server"
            except ApiError:
                pass
        return self.cache.assets_near(category.layer, lat, lon, radius), "cache"

    def add_photo(self, source: str | Path) -> str:
        """Copy (and downscale if needed) a photo into the app's store; the path to queue."""
        return str(photos.prepare(source, self.store.photo_dir))

    def queue_report(self, draft: Draft) -> QueueItem:
        """Save the report on the device (with a new client_id) and wake the sync loop; raises DraftError."""
        payload, errors = build_payload(draft)
        if errors:
            raise DraftError(errors)
        item = self.outbox.add_report(payload, draft.photos)
        self.loop.kick()
        return item

    def my_reports(self) -> list[tuple[QueueItem, dict | None]]:
        """Reports sent from this device, newest first, with the last status refreshed from the server."""
        out = []
        for item in self.outbox.items(kind=REPORT, states=(SENT,)):
            cached = self.cache.report_status(item.reference) if item.reference else None
            out.append((item, cached[0] if cached else None))
        return out

    def refresh_reports(self, limit: int = 50) -> int:
        """GET each recent sent report's current state; how many were refreshed.

        A report the server will not show this token (a field worker sees only reports made with the
        same token, so not those sent before a re-sign-in) keeps its last known state.
        """
        api = self._need_api()
        n = 0
        for item in self.outbox.items(kind=REPORT, states=(SENT,))[:limit]:
            if not item.reference:
                continue
            try:
                self.cache.save_report_status(item.reference, api.report(item.reference))
                n += 1
            except Refused:
                continue
        return n

    # -- crew ---------------------------------------------------------------------------------
    def refresh_jobs(self) -> list[dict]:
        """Fetch the crew's jobs (and keep them for offline)."""
        jobs = self._need_api().my_jobs()
        self.cache.save_jobs(jobs)
        return jobs

    def refresh_plan(self) -> dict:
        """Fetch today's plan for the crew (and keep it for offline)."""
        plan = self._need_api().my_plan()
        self.store.set(today_plan=plan, today_plan_at=time.time())
        return plan

    def today_plan(self) -> tuple[dict | None, float | None]:
        """The last plan fetched and when (None, None if never)."""
        return self.store.get("today_plan"), self.store.get("today_plan_at")

    def job_detail(self, reference: str) -> dict:
        """A job's full page from the server, or the cached copy when offline."""
        api = self.api()
        if api is not None:
            try:
                detail = api.job(reference)
                self.cache.save_job_detail(detail)
                return detail
            except ApiError:
                pass
        cached = self.cache.job(reference)
        if cached is None:
            raise KeyError(reference)
        return cached

    def _sent(self, item: QueueItem, answer: dict) -> None:
        if item.kind == "job_status" and isinstance(answer.get("job"), dict):
            self.cache.update_job(answer["job"])

    def start_job(self, job: dict, fix: Fix | None) -> list[QueueItem]:
        """Queue the moves that start a job; raises crew.CrewError."""
        items = crew.start(self.outbox, job, fix)
        self.loop.kick()
        return items

    def complete_job(self, job: dict, fix: Fix | None, photo_paths: list[str], note: str | None = None) -> QueueItem:
        """Queue the completion with photo(s) and GPS; raises crew.CrewError."""
        item = crew.complete(self.outbox, job, fix, photo_paths, note)
        self.loop.kick()
        return item

    # -- lifecycle ----------------------------------------------------------------------------
    def _need_api(self) -> Api:
        api = self.api()
        if api is None:
            raise ApiError("not signed in")
        return api

    def close(self) -> None:
        """Stop the loop and close the store."""
        self.loop.stop()
        self.sync.close()
        with self._api_lock:
            if self._api is not None:
                self._api.close()
        self.store.close()
