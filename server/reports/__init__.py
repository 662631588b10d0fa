"""Kerbside reports."""
