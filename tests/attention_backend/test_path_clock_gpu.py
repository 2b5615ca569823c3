"""PathClock on a GPU: a span's time comes back once the GPU has finished it, without a host wait, and is the
stream time of the work inside it, host set-up inside the span included (the first test's warm-up: the GPU run
of 2026-12-06 13:58 UTC timed cuBLAS's first matmul at 153 ms, which is why a path's cost never rests on one
timing, attention_backend.layer_gate)."""

from __future__ import annotations

import pytest
import torch

from attention_backend.path_clock import PathClock

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA events need a GPU"),
]


def test_spans_come_back_in_order_with_their_stream_time():
    clock = PathClock()
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    a @ a  # cuBLAS's first call sets up on the host while the stream waits: 153 ms inside a span on an H100
    torch.cuda.synchronize()
    short = clock.start()
    a @ a
    clock.stop(short, "one matmul")
    long = clock.start()
    for _ in range(8):
        a @ a
    clock.stop(long, "eight matmuls")
    torch.cuda.synchronize()
    (k1, ms1), (k2, ms2) = clock.done()
    assert (k1, k2) == ("one matmul", "eight matmuls")
    assert 0 < ms1 < ms2 and ms2 / ms1 > 4  # 8 x the work, within launch noise
    assert clock.done() == []


def _warm_matrix() -> torch.Tensor:
    """An 8192^2 bf16 matrix whose first matmul (cuBLAS set-up) is done and finished."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    a @ a
    torch.cuda.synchronize()
    return a


def _queue_work(a: torch.Tensor) -> None:
    for _ in range(50):  # ~50 ms of work on an H100
        a @ a


def test_an_unfinished_span_is_not_waited_for():
    clock = PathClock()
    a = _warm_matrix()
    span = clock.start()
    _queue_work(a)
    clock.stop(span, "busy")
    assert clock.done() == []  # the GPU is still busy: nothing yet, and no wait
    torch.cuda.synchronize()
    assert [k for k, _ in clock.done()] == ["busy"]


def test_a_span_knows_whether_it_began_on_an_idle_stream():
    """``idle`` right after ``start``: True with nothing queued before the span, False behind queued work."""
    clock = PathClock()
    a = _warm_matrix()
    span = clock.start()
    assert clock.idle(span)  # nothing before it
    clock.stop(span, "idle start")
    _queue_work(a)
    busy = clock.start()
    assert not clock.idle(busy)
    clock.stop(busy, "busy start")
    torch.cuda.synchronize()
    assert [k for k, _ in clock.done()] == ["idle start", "busy start"]
