"""LayerGate: the CUDA adapter's per-layer shortcuts from the layer's latest estimated density."""

import pytest

from attention_backend.layer_gate import LayerGate


def test_far_above_the_break_even_skips_the_estimate_but_reestimates_every_nth_call():
    gate = LayerGate(dense_above=0.25, dense_margin=1.5, reprobe_every=4)
    assert not gate.skip_estimate()  # nothing estimated yet: estimate
    gate.observe(kept=70, causal=100)  # 0.70 >= 1.5 * 0.25
    calls = [gate.skip_estimate() for _ in range(8)]
    assert calls == [True, True, True, False, True, True, True, False]
    other = LayerGate(dense_above=0.25, dense_margin=1.5, reprobe_every=4)
    other.observe(kept=30, causal=100)  # 0.30: above the break-even, under the margin: decide per row
    assert not other.skip_estimate()


def test_a_reestimate_under_the_margin_returns_the_layer_to_per_row_decisions():
    gate = LayerGate(dense_above=0.5, reprobe_every=2)
    gate.observe(90, 100)
    assert gate.skip_estimate()
    assert not gate.skip_estimate()  # the re-estimating call
    gate.observe(20, 100)  # the attention changed
    assert [gate.skip_estimate() for _ in range(3)] == [False, False, False]
    gate.observe(95, 100)  # far above again: the count starts over
    assert gate.skip_estimate()


def test_probe_is_skipped_only_far_under_the_break_even():
    gate = LayerGate(dense_above=0.6)
    assert gate.probe()  # no estimate yet
    gate.observe(29, 100)  # under 0.5 * 0.6
    assert not gate.probe()
    gate.observe(31, 100)
    assert gate.probe()
    gate.observe(0, 0)  # an empty estimate keeps the latest
    assert gate.probe()


def test_nothing_is_skipped_when_every_row_runs_sparse():
    gate = LayerGate(dense_above=1.0)
    gate.observe(100, 100)
    assert not gate.skip_estimate() and not gate.probe()


@pytest.mark.parametrize("kw", [{"dense_margin": 0.9}, {"reprobe_every": 0}, {"probe_below": 1.5}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError, match="LayerGate"):
        LayerGate(dense_above=0.5, **kw)
