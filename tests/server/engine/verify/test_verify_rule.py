"""The speculative-sampling step (server/engine/verify/rule.py): its output follows the target p exactly."""

from __future__ import annotations

import pytest
import torch

from server.engine.verify.rule import speculative_step

P = torch.tensor([0.30, 0.25, 0.15, 0.10, 0.08, 0.06, 0.04, 0.02, 0.0, 0.0], dtype=torch.float32)


def _run(q_row, n=10_000, seed=0):
    """Draw the draft from q each time (as an edge does), then apply the step."""
    gen = torch.Generator().manual_seed(seed)
    drafts = torch.multinomial(torch.tensor([q for _, q in q_row]), n, replacement=True,
                               generator=torch.Generator().manual_seed(seed + 1))
    counts = torch.zeros(len(P))
    kept = 0
    for j in drafts.tolist():
        tok, k = speculative_step(P, q_row[j][0], q_row, gen)
        counts[tok] += 1
        kept += k
    return counts / n, kept / n


@pytest.mark.parametrize(
    ("name", "q_row"),
    [
        ("point mass on the top token", [(0, 1.0)]),
        ("point mass on a rare token", [(7, 1.0)]),
        ("point mass where p is 0", [(9, 1.0)]),
        ("sparse q unlike p", [(2, 0.2), (5, 0.5), (8, 0.3)]),
        ("sparse q partly above, partly below p", [(0, 0.1), (3, 0.9)]),
    ],
)
def test_output_follows_p_and_acceptance_is_sum_min(name, q_row):
    freq, kept = _run(q_row)
    # 10k draws: the standard error of each frequency is <= 0.005; 0.02 is 4 sigma.
    assert (freq - P).abs().max() < 0.02, (name, freq)
    assert freq[8] == 0 and freq[9] == 0  # tokens p excludes are never emitted
    # P(keep) = sum_x q(x) min(1, p(x)/q(x)) = sum_x min(p(x), q(x)).
    want = sum(min(float(P[t]), q) for t, q in q_row)
    assert abs(kept - want) < 0.02, (name, kept, want)


def test_fixed_seed_fixed_outcome_and_bad_q():
    a = [speculative_step(P, 7, [(7, 1.0)], torch.Generator().manual_seed(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    with pytest.raises(ValueError, match="no probability"):
        speculative_step(P, 3, [(4, 1.0)], torch.Generator())
