"""Window/overlap arithmetic, for any length, window, overlap and range."""

import math

from hypothesis import given, settings, strategies as st

from cinescale_post.contracts.engine import FrameRule
from cinescale_post.pipeline.windows import chunks, coverage, layout

rules = st.sampled_from([FrameRule(1, 0), FrameRule(4, 1), FrameRule(8, 1), FrameRule(2, 0)])


@st.composite
def setups(draw):
    rule = draw(rules)
    n = draw(st.integers(1, 120))
    k = draw(st.integers(0, 12))
    size = k * rule.multiple + max(rule.offset, 1 if rule.offset == 0 else rule.offset)
    if not rule.accepts(size):
        size = rule.largest_at_most(size + rule.multiple)
    overlap = draw(st.integers(0, size - 1))
    first = draw(st.integers(-5, 2000))
    blend = draw(st.sampled_from(["linear", "hann"]))
    handles = draw(st.integers(0, 4))
    return rule, list(range(first, first + n)), size, overlap, blend, handles


@settings(max_examples=300, deadline=None)
@given(setups())
def test_every_frame_covered_weights_sum_to_one(s):
    rule, src, size, overlap, blend, handles = s
    wins = layout(src, size=size, overlap=overlap, rule=rule, blend=blend, handles=handles)
    cov = coverage(wins)
    assert sorted(cov) == src  # every frame, nothing else
    for f, items in cov.items():
        assert math.isclose(sum(w for _, w in items), 1.0, rel_tol=1e-9)
        assert all(w > 0 for _, w in items)
        assert [i for i, _ in items] == sorted(i for i, _ in items)
    for w in wins:
        assert rule.accepts(len(w.frames))  # backend frame rule honoured
        assert len(w.frames) == (size if len(src) >= size else len(w.frames))
        assert set(w.context_before + w.context_after) <= set(src)
        assert len(w.context_before) <= handles and len(w.context_after) <= handles
        assert not set(w.context_before) & set(w.frames)
    # windows are ordered: each frame's covering windows are consecutive
    for items in cov.values():
        idx = [i for i, _ in items]
        assert idx == list(range(idx[0], idx[0] + len(idx)))


@settings(max_examples=300, deadline=None)
@given(setups(), st.data())
def test_chunks_own_each_wanted_frame_exactly_once(s, data):
    rule, src, size, overlap, blend, handles = s
    wins = layout(src, size=size, overlap=overlap, rule=rule, blend=blend)
    lo = data.draw(st.integers(0, len(src) - 1))
    hi = data.draw(st.integers(lo, len(src) - 1))
    step = data.draw(st.integers(1, 3))
    wanted = src[lo:hi + 1:step]
    chunk_size = data.draw(st.integers(0, 40))
    cs = chunks(src, wanted, wins, chunk_size)
    owned = [f for c in cs for f in c.frames]
    assert sorted(owned) == sorted(wanted) and len(owned) == len(set(owned))
    cov = coverage(wins)
    for c in cs:
        for f in c.frames:
            assert {i for i, _ in cov[f]} <= set(c.windows)
        if chunk_size:
            pos = {f: i for i, f in enumerate(src)}
            assert len({pos[f] // chunk_size for f in c.frames}) == 1


@settings(max_examples=200, deadline=None)
@given(setups(), st.integers(0, 50))
def test_layout_does_not_depend_on_requested_range(s, cut):
    """Same windows whatever subset is later requested: sub-range determinism."""
    rule, src, size, overlap, blend, _ = s
    a = layout(src, size=size, overlap=overlap, rule=rule, blend=blend)
    b = layout(list(src), size=size, overlap=overlap, rule=rule, blend=blend)
    assert [(w.frames, w.weights) for w in a] == [(w.frames, w.weights) for w in b]


def test_short_clip_is_padded_to_the_frame_rule():
    (w,) = layout([1001, 1002, 1003], size=9, overlap=2, rule=FrameRule(4, 1))
    assert w.frames == (1001, 1002, 1003, 1003, 1003) and w.real_frames == (1001, 1002, 1003)


def test_linear_and_hann_ramps():
    wins = layout(list(range(10)), size=6, overlap=2, blend="linear")
    assert [w.frames for w in wins] == [tuple(range(0, 6)), tuple(range(4, 10))]
    cov = coverage(wins)
    assert [round(x, 6) for _, x in cov[4]] == [round(2 / 3, 6), round(1 / 3, 6)]
    hann = coverage(layout(list(range(10)), size=6, overlap=2, blend="hann"))
    assert math.isclose(hann[4][0][1], 0.75) and math.isclose(hann[5][1][1], 0.75)
