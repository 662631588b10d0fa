"""Kerbside catalogue."""
