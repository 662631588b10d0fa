"""The Kerbside field app (Kivy): `python -m mobile.main` on a desktop, buildozer for Android."""
