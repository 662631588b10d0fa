"""Kerbside contact_centre."""
