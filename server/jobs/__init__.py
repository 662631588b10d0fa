"""Kerbside jobs."""
