"""Kerbside: field-worker job dispatch and asset-fault reporting for UK councils."""
__version__ = "0.1.0"
