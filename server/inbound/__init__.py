"""Kerbside inbound."""
