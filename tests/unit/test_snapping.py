"""Snapping choice: properties that hold for any candidates."""
from hypothesis import given, settings
from hypothesis import strategies as st

from server.assets.snapping import Candidate, choose, confidence

dist = st.floats(min_value=0, max_value=500, allow_nan=False)
cands = st.lists(st.tuples(st.integers(1, 10_000), dist), min_size=0, max_size=8, unique_by=lambda t: t[0]).map(
    lambda xs: [Candidate(i, f"A{i}", d) for i, d in xs])


@settings(max_examples=300, deadline=None)
@given(cands, st.floats(1, 200), st.one_of(st.none(), st.floats(0, 300)))
def test_choice_is_nearest_within_radius(candidates, radius, accuracy):
    snap = choose(candidates, radius, accuracy)
    in_range = [c for c in candidates if c.distance_m <= radius]
    if not in_range:
        assert snap.chosen is None and snap.confidence == 0.0 and "no asset within" in snap.reason
    else:
        assert snap.chosen is not None
        assert snap.chosen.distance_m == min(c.distance_m for c in in_range)
        assert 0.0 <= snap.confidence <= 1.0
        if snap.runner_up is not None:
            assert snap.runner_up.asset_id != snap.chosen.asset_id
            assert snap.runner_up.distance_m >= snap.chosen.distance_m


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 100), st.floats(0, 100), st.floats(0, 50), st.floats(0, 50))
def test_a_closer_runner_up_never_raises_confidence(d1, gap, gap2, acc):
    far = confidence(d1, d1 + gap + gap2, acc, 50)
    near = confidence(d1, d1 + gap, acc, 50)
    assert near <= far


def test_clear_single_asset_is_confident_and_ambiguous_pair_is_not():
    assert confidence(2, None, 5, 25) == 1.0
    assert confidence(4, 4.5, 20, 25) < 0.6


def test_hint_within_radius_wins_over_nearest_and_far_hint_is_ignored():
    a, b = Candidate(1, "A", 3.0), Candidate(2, "B", 12.0)
    assert choose([a, b], 25, 5, hint=b).chosen == b
    far = Candidate(3, "C", 80.0)
    snap = choose([a, b], 25, 5, hint=far)
    assert snap.chosen == a and not snap.hint_used
