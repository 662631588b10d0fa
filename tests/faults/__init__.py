"""Fault tests: real processes killed, databases stopped, outside systems failing — nothing lost, nothing doubled."""
