"""Kivy screens: one screen = one .py + one .kv."""
