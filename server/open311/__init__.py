"""Kerbside open311."""
