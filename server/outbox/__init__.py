"""Kerbside outbox."""
