"""Closing the loop with reporters: their contact (kept apart), GOV.UK Notify messages, status page, chasers."""
