"""Offline copies of what the server said: categories, crew jobs, nearby assets, report statuses."""
from __future__ import annotations

import json
import math
import time

from .models import Asset, Category, distance_m
from .store import Store


class Cache:
    """Reads and writes the cache tables of the store."""

    def __init__(self, store: Store):
        self.store = store

    # -- categories ---------------------------------------------------------------------------
    def save_categories(self, cats: list[dict]) -> list[str]:
        """Replace the catalogue; categories the server no longer lists are kept, marked removed. Returns them."""
        now = time.time()
        codes = [c["code"] for c in cats]
        with self.store.tx() as c:
            for i, cat in enumerate(cats):
                c.execute("INSERT INTO categories (code, position, body, removed, fetched_at) VALUES (?, ?, ?, 0, ?) "
                          "ON CONFLICT (code) DO UPDATE SET position = excluded.position, body = excluded.body, "
                          "removed = 0, fetched_at = excluded.fetched_at", (cat["code"], i, json.dumps(cat), now))
            marks = ",".join("?" * len(codes)) or "''"
            gone = [r["code"] for r in c.execute(
                f"SELECT code FROM categories WHERE removed = 0 AND code NOT IN ({marks})", codes)]
            c.execute(f"UPDATE categories SET removed = 1 WHERE code NOT IN ({marks})", codes)
        return gone

    def categories(self, include_removed: bool = False) -> list[Category]:
        """The cached catalogue in server order."""
        rows = self.store.query("SELECT body, removed FROM categories ORDER BY position, code")
        cats = [Category.from_api(json.loads(r["body"]), bool(r["removed"])) for r in rows]
        return [c for c in cats if include_removed or not c.removed]

    def category(self, code: str) -> Category | None:
        """One cached category (removed ones too: a draft may still name it)."""
        rows = self.store.query("SELECT body, removed FROM categories WHERE code = ?", (code,))
        return Category.from_api(json.loads(rows[0]["body"]), bool(rows[0]["removed"])) if rows else None

    # -- crew jobs ----------------------------------------------------------------------------
    def save_jobs(self, items: list[dict]) -> None:
        """Replace the crew's job list (details of jobs still listed are kept)."""
        now = time.time()
        refs = [j["reference"] for j in items]
        with self.store.tx() as c:
            marks = ",".join("?" * len(refs)) or "''"
            c.execute(f"DELETE FROM jobs WHERE reference NOT IN ({marks})", refs)
            for i, job in enumerate(items):
                c.execute("INSERT INTO jobs (reference, position, body, fetched_at) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT (reference) DO UPDATE SET position = excluded.position, body = excluded.body, "
                          "fetched_at = excluded.fetched_at", (job["reference"], i, json.dumps(job), now))

    def save_job_detail(self, detail: dict) -> None:
        """Keep one job's full page for offline reading."""
        with self.store.tx() as c:
            c.execute("UPDATE jobs SET detail = ? WHERE reference = ?", (json.dumps(detail), detail["reference"]))

    def update_job(self, summary: dict) -> None:
        """Merge a job summary the server just gave (e.g. after a move) into the cached row and page."""
        fresh = {k: v for k, v in summary.items() if k != "asset"}
        with self.store.tx() as c:
            row = c.execute("SELECT body, detail FROM jobs WHERE reference = ?", (summary["reference"],)).fetchone()
            if row is None:
                return
            body = {**json.loads(row["body"]), **fresh}
            detail = {**json.loads(row["detail"]), **fresh} if row["detail"] else None
            c.execute("UPDATE jobs SET body = ?, detail = ? WHERE reference = ?",
                      (json.dumps(body), json.dumps(detail) if detail else None, summary["reference"]))

    def jobs(self) -> list[dict]:
        """The cached job list, in the server's order (open first, soonest due first)."""
        return [json.loads(r["body"]) for r in self.store.query("SELECT body FROM jobs ORDER BY position")]

    def job(self, reference: str) -> dict | None:
        """A cached job: its full page if we have it, else its list row."""
        rows = self.store.query("SELECT body, detail FROM jobs WHERE reference = ?", (reference,))
        if not rows:
            return None
        return json.loads(rows[0]["detail"] or rows[0]["body"])

    def jobs_fetched_at(self) -> float | None:
        """When the job list was last refreshed."""
        return self.store.query("SELECT MAX(fetched_at) AS t FROM jobs")[0]["t"]

    # -- assets -------------------------------------------------------------------------------
    def save_assets(self, assets: list[Asset]) -> None:
        """Remember assets seen near where we worked."""
        now = time.time()
        with self.store.tx() as c:
            c.executemany("INSERT OR REPLACE INTO assets (layer, ref, name, lat, lon, fetched_at) VALUES (?,?,?,?,?,?)",
                          [(a.layer, a.ref, a.name, a.lat, a.lon, now) for a in assets])

    def assets_near(self, layer: str, lat: float, lon: float, radius_m: float = 150, limit: int = 20) -> list[Asset]:
        """Cached assets of a layer within radius_m, nearest first."""
        dlat = radius_m / 111_320.0
        dlon = radius_m / (111_320.0 * max(0.01, math.cos(math.radians(lat))))
        rows = self.store.query("SELECT * FROM assets WHERE layer = ? AND lat BETWEEN ? AND ? AND lon BETWEEN ? AND ?",
                                (layer, lat - dlat, lat + dlat, lon - dlon, lon + dlon))
        found = [Asset(layer, r["ref"], r["name"], r["lat"], r["lon"], distance_m(lat, lon, r["lat"], r["lon"]))
                 for r in rows]
        return sorted((a for a in found if a.distance_m <= radius_m), key=lambda a: a.distance_m)[:limit]

    # -- report statuses ----------------------------------------------------------------------
    def save_report_status(self, reference: str, body: dict) -> None:
        """Keep GET /api/v1/reports/{ref}'s answer."""
        with self.store.tx() as c:
            c.execute("INSERT OR REPLACE INTO report_status (reference, body, refreshed_at) VALUES (?, ?, ?)",
                      (reference, json.dumps(body), time.time()))

    def report_status(self, reference: str) -> tuple[dict, float] | None:
        """(answer, when refreshed) for a report, if we have refreshed it."""
        rows = self.store.query("SELECT body, refreshed_at FROM report_status WHERE reference = ?", (reference,))
        return (json.loads(rows[0]["body"]), rows[0]["refreshed_at"]) if rows else None
