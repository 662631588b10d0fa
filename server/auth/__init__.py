"""Kerbside auth."""
