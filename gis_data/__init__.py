"""Kerbside GIS data: the layer manifest, category catalogue and synthetic generators."""
