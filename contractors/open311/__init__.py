"""Send jobs to any Open311 GeoReport v2 back office; poll its servicerequestupdates for progress."""
