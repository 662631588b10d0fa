"""Street-lighting contractor (e.g. Brightway): JSON REST orders, signed both ways, pushes and polling."""
