"""Asset layers, assets, the GIS importer and snapping."""
