"""A real HTTP contractor for demos and tests: street-lighting JSON API + a minimal Open311 back office.

Run: `python -m contractors.simulator --port 8100` (or uvicorn `contractors.simulator.app:create_app --factory`).
"""
