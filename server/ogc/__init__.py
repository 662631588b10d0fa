"""Kerbside ogc."""
