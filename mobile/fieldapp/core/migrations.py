"""SQLite schema migrations for the device store, applied in order (PRAGMA user_version = how many)."""
from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: settings, the category cache and the outbox with its photos.
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE categories (
        code TEXT PRIMARY KEY, position INTEGER NOT NULL, body TEXT NOT NULL,
        removed INTEGER NOT NULL DEFAULT 0, fetched_at REAL NOT NULL);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('report', 'job_status')),
        target TEXT,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('waiting', 'sending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        last_error TEXT, error_code TEXT, result TEXT,
        created_at REAL NOT NULL, updated_at REAL NOT NULL);
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    CREATE TABLE outbox_photos (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        item_id INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
        client_id TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        server_id INTEGER);
    """,
    # 2: offline caches for crew jobs and nearby assets, and report statuses refreshed from the server.
    """
    CREATE TABLE jobs (reference TEXT PRIMARY KEY, position INTEGER NOT NULL, body TEXT NOT NULL,
                       detail TEXT, fetched_at REAL NOT NULL);
    CREATE TABLE assets (layer TEXT NOT NULL, ref TEXT NOT NULL, name TEXT, lat REAL NOT NULL,
                         lon REAL NOT NULL, fetched_at REAL NOT NULL, PRIMARY KEY (layer, ref));
    CREATE INDEX assets_place ON assets (layer, lat, lon);
    CREATE TABLE report_status (reference TEXT PRIMARY KEY, body TEXT NOT NULL, refreshed_at REAL NOT NULL);
    """,
]
