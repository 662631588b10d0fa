"""The app's core: models, SQLite store, outbox, API client and sync — no Kivy imports (a test checks)."""
