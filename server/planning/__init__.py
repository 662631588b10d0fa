"""Crew day plans on the road network: pgRouting travel times, VROOM routes, live re-planning."""
