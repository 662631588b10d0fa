"""Device facades: location and camera, a plyer implementation for Android and fakes for desktops and tests."""
