"""Synthetic q/k with planted attention structure, one kind per head (for selection/calibration tests)."""

from __future__ import annotations

import math

import torch

KINDS = ("sink", "vertical", "slash_even", "slash_odd", "local", "diffuse")
VERTICAL_KEYS = (301, 902, 1503)
SLASH_OFFSETS = {"slash_even": 256, "slash_odd": 77, "local": 0}


def planted_qk(length: int = 2048, d: int = 64, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k: [length, len(KINDS), d] float32; head h follows ``KINDS[h]``:
    sink: every query attends to token 0; vertical: to the keys at VERTICAL_KEYS; slash_*/local: to
    the key ``offset`` tokens back (relative-position features, like RoPE); diffuse: no structure."""
    g = torch.Generator().manual_seed(seed)
    n = len(KINDS)
    q = 0.3 * torch.randn(length, n, d, generator=g)
    k = 0.3 * torch.randn(length, n, d, generator=g)
    u = torch.zeros(d)
    u[0] = 1.0
    pos = torch.arange(length, dtype=torch.float64)
    freqs = torch.tensor([math.pi / 2 ** (i / 3) for i in range(d // 2)], dtype=torch.float64)
    for h, kind in enumerate(KINDS):
        if kind == "sink":
            q[:, h] += 12.0 * u
            k[0, h] += 12.0 * u
        elif kind == "vertical":
            q[:, h] += 10.0 * u
            for j in VERTICAL_KEYS:
                k[j, h] += 10.0 * u
        elif kind in SLASH_OFFSETS:
            off = SLASH_OFFSETS[kind]
            qa = torch.outer(pos, freqs)
            ka = torch.outer(pos + off, freqs)
            amp = 1.6
            q[:, h] = amp * torch.cat([qa.cos(), qa.sin()], dim=-1).float() + 0.1 * q[:, h]
            k[:, h] = amp * torch.cat([ka.cos(), ka.sin()], dim=-1).float() + 0.1 * k[:, h]
    return q, k
