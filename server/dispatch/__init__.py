"""Kerbside dispatch."""
