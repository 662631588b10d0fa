"""Kerbside field app: core (no UI), device facades, Kivy screens."""
