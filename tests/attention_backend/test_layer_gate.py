"""LayerGate: the CUDA adapter's per-layer shortcuts from the layer's latest estimated density."""

import pytest

from attention_backend.layer_gate import DENSE, XATTN, LayerGate, bucket_tokens, length_bucket


def test_far_above_the_break_even_skips_the_estimate_but_reestimates_every_nth_call():
    gate = LayerGate(dense_above=0.25, dense_margin=1.5, reprobe_every=4)
    assert not gate.skip_estimate()  # nothing estimated yet: estimate
    gate.observe(kept=70, causal=100)  # 0.70 >= 1.5 * 0.25
    calls = [gate.skip_estimate() for _ in range(8)]
    assert calls == [True, True, True, False, True, True, True, False]
    other = LayerGate(dense_above=0.25, dense_margin=1.5, reprobe_every=4)
    other.observe(kept=30, causal=100)  # 0.30: above the break-even, under the margin: decide per row
    assert not other.skip_estimate()


def test_a_density_at_the_margin_still_estimates_as_a_row_at_the_break_even_runs_sparse():
    gate = LayerGate(dense_above=0.5, dense_margin=1.0, reprobe_every=4)
    gate.observe(kept=50, causal=100)  # exactly the break-even: such a row runs sparse, so keep estimating
    assert not gate.skip_estimate()
    gate.observe(kept=51, causal=100)
    assert gate.skip_estimate()


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


def test_each_length_bucket_keeps_its_own_estimate():
    gate = LayerGate(dense_above=0.5, reprobe_every=4)
    long, short = length_bucket(128_000), length_bucket(32_000)
    gate.observe(90, 100, short)  # 32K far above the break-even, 128K under it
    gate.observe(10, 100, long)
    assert gate.skip_estimate(short) and not gate.skip_estimate(long)
    assert gate.on_device(long) and not gate.on_device(short)
    assert gate.density(length_bucket(64_000)) is None


def test_buckets_are_half_octaves():
    assert length_bucket(32_767) == length_bucket(23_171) == length_bucket(32_000)
    assert length_bucket(32_768) == length_bucket(32_767) + 1
    assert bucket_tokens(length_bucket(32_000)) == 23_171 and bucket_tokens(length_bucket(16_384)) == 16_384


def test_timed_paths_pick_the_cheaper_per_unit_of_work_and_retime_the_other():
    gate = LayerGate(dense_above=0.5, retime_every=4, layer=0, far_apart=2.5, first_runs=1)
    b = length_bucket(32_000)
    assert gate.path(b) == (XATTN, "density")  # nothing timed: estimate
    gate.started(b, XATTN)
    assert gate.path(b) == (DENSE, "first")
    gate.started(b, DENSE)
    assert gate.path(b) == (XATTN, "density")  # both started, neither timing back yet
    gate.record(b, XATTN, ms=3.0, work=2.0)  # 1.5 ms per unit
    gate.record(b, DENSE, ms=1.0, work=1.0)  # 1.0
    assert [gate.path(b) for _ in range(4)] == [(XATTN, "retime"), (DENSE, "timed"), (DENSE, "timed"), (DENSE, "timed")]
    for _ in range(2):
        gate.record(b, XATTN, ms=0.5, work=1.0)  # XAttention got cheaper: median of 1.5, 0.5, 0.5
    assert gate.path(b) == (DENSE, "retime")
    assert gate.path(b) == (XATTN, "timed")
    assert gate.costs() == {23_171: {XATTN: 0.5, DENSE: 1.0}}


def test_each_path_runs_twice_before_the_timings_decide():
    gate = LayerGate(dense_above=0.5, retime_every=16)
    b, order = 30, []
    for _ in range(6):
        path, why = gate.path(b)
        gate.started(b, path)
        gate.record(b, path, ms={XATTN: 0.5, DENSE: 1.0}[path], work=1.0)
        order.append((path, why))
    assert order == [(XATTN, "density"), (DENSE, "first"), (XATTN, "first"), (DENSE, "first"),
                     (XATTN, "timed"), (XATTN, "timed")]  # fmt: skip


def test_one_slow_timing_never_decides_alone():
    """A first call's set-up (a compile, a host stall) shows as one huge timing: the smallest of fewer than three,
    then the median of the latest three, ignore it (measured: one layer's first XAttention call at 23K timed
    287x its dense cost, bench/results/xattn_real/notes.md)."""
    gate = LayerGate(dense_above=0.5)
    gate.record(30, XATTN, ms=287.0, work=1.0)
    gate.record(30, XATTN, ms=0.6, work=1.0)
    assert gate.costs()[bucket_tokens(30)][XATTN] == 0.6
    gate.record(30, XATTN, ms=0.7, work=1.0)
    assert gate.costs()[bucket_tokens(30)][XATTN] == 0.7  # median of 287, 0.6, 0.7
    gate.record(30, XATTN, ms=0.8, work=1.0)
    assert gate.costs()[bucket_tokens(30)][XATTN] == 0.7  # the latest three: 0.6, 0.7, 0.8


def test_paths_far_apart_are_retimed_less_often():
    gate = LayerGate(dense_above=0.5, retime_every=2, layer=0, far_apart=1.5, far_apart_factor=3, first_runs=1)
    gate.started(30, XATTN)
    gate.started(30, DENSE)
    gate.record(30, XATTN, ms=1.0, work=1.0)
    gate.record(30, DENSE, ms=2.0, work=1.0)  # dense 2x XAttention: re-timed every 6th call, not every 2nd
    paths = [gate.path(30)[1] for _ in range(12)]
    assert [i + 1 for i, why in enumerate(paths) if why == "retime"] == [6, 12]


def test_bad_timings_are_ignored():
    gate = LayerGate(dense_above=0.5)
    gate.record(30, DENSE, ms=2.0, work=1.0)
    gate.record(30, DENSE, ms=float("nan"), work=1.0)
    gate.record(30, DENSE, ms=1.0, work=0.0)
    gate.record(30, DENSE, ms=-1.0, work=1.0)
    assert gate.costs() == {bucket_tokens(30): {DENSE: 2.0}}


def test_without_timing_or_decisions_the_density_rules_alone_answer():
    untimed = LayerGate(dense_above=0.25, reprobe_every=4, time_paths=False)
    untimed.started(30, XATTN)
    untimed.observe(90, 100, 30)
    assert untimed.path(30) == (DENSE, "density")  # no "first" dense call without timing
    every_row_sparse = LayerGate(dense_above=1.0)
    every_row_sparse.started(30, XATTN)
    assert every_row_sparse.path(30) == (XATTN, "density")


@pytest.mark.parametrize(
    "kw",
    [{"dense_margin": 0.9}, {"reprobe_every": 0}, {"probe_below": 1.5}, {"retime_every": 1}, {"first_runs": 0},
     {"far_apart": 0.5}, {"far_apart_factor": 0}],
)
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError, match="LayerGate"):
        LayerGate(dense_above=0.5, **kw)
