"""The speculative-sampling step on one position's full-vocabulary target distribution (torch, no vLLM).

Leviathan et al. 2023 / Chen et al. 2023: with the draft token d drawn from q, keep d with probability
min(1, p(d) / q(d)); otherwise draw from the residual max(0, p - q) normalised. The emitted token is then
distributed exactly as p, whatever q is, as long as q is the distribution d was really drawn from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def speculative_step(
    p: torch.Tensor, draft: int, q_row: Sequence[tuple[int, float]], generator: torch.Generator
) -> tuple[int, bool]:
    """``p``: [V] float probabilities (sum 1). ``q_row``: the edge's q on its support as (token, prob).

    Returns (emitted token, whether it is the draft token). Uses ``generator`` for every draw, so a fixed
    seed gives a fixed outcome.
    """
    q_of = dict(q_row)
    qd = q_of.get(draft, 0.0)
    if qd <= 0.0:
        raise ValueError(f"q gives the drafted token {draft} no probability")
    pd = float(p[draft])
    u = float(torch.rand((), generator=generator, device=generator.device))
    if u < min(1.0, pd / qd):
        return draft, True
    residual = p.to(torch.float64).clone()
    ids = torch.tensor(list(q_of), dtype=torch.long, device=p.device)
    qs = torch.tensor(list(q_of.values()), dtype=torch.float64, device=p.device)
    residual[ids] = (residual[ids] - qs).clamp_(min=0.0)
    residual[draft] = 0.0  # p(d) < q(d) here, so its residual is 0; also guards rounding
    total = float(residual.sum())
    if total <= 0.0:
        # Exactly, P(reject) = sum(max(0, q - p)) = sum(max(0, p - q)) = total, so this needs p == q up to
        # rounding, where keeping d is what p says. (Raising here would take the engine's worker down.)
        return draft, True
    token = int(torch.multinomial(residual / total, 1, generator=generator))
    return token, False
