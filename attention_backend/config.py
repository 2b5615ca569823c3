"""XAttention configuration: one frozen, validated dataclass, plus the ``xedge serve`` flag mapping.

This module imports nothing heavy (no torch) so the CLI and the server can use it freely.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ADDITIONAL_CONFIG_KEY = "xattn"
"""Key of our section in vLLM's ``--additional-config`` JSON: ``{"xattn": {...}}``."""

ThresholdTable = tuple[tuple[float, ...], ...]

KERNEL_BLOCK_SIZES = (64, 128)
KERNEL_HEAD_DIMS = (64, 128, 256)
"""What the Triton kernels (``attention_backend.kernels``) support; here so start-up checks need no Triton."""


@functools.cache
def kernel_strides(block_size: int) -> tuple[int, ...]:
    """The strides the Triton kernels take at ``block_size``: each splits a block into a power of two >= 4 of
    antidiagonal rows."""
    return tuple(
        s for s in range(1, block_size // 4 + 1) if block_size % s == 0 and (block_size // s) & (block_size // s - 1) == 0
    )

SPARSE_KERNELS = ("auto", "fa3", "triton")
"""Values of ``XAttentionConfig.sparse_kernel``."""


@dataclass(frozen=True)
class XAttentionConfig:
    """How XAttention estimates, selects and runs block-sparse prefill attention.

    Attributes:
        block_size: B, tokens per block on both the query and the key side.
        stride: S, antidiagonal stride of the estimate; must divide ``block_size``.
        threshold: tau in (0, 1], the share of each row's *estimated* block mass to keep. A float
            applies to every head; a table ``threshold[layer][head]`` (query heads) gives one per head.
            tau = 1 keeps every causal block (dense attention).
        min_sparse_len: in vLLM, prefill rows whose context has fewer tokens stay dense.
        dense_above: in vLLM on CUDA, a prefill row whose estimated density (kept / causal blocks, per
            layer) is above this runs vLLM's dense kernel instead; None = the break-even measured for the
            card (``attention_backend.break_even``). In (0, 1]; 1 never switches.
        min_sparse_ms: in vLLM on CUDA, a prefill row runs XAttention in a layer only when dense attention
            of it there would take at least this long on the card (its causal FLOPs over the FA3 TFLOP/s
            measured for the card): below, the fixed per-layer cost of estimating and launching is not
            won back (bench/results/xattn_real/notes.md). None = the card's measured value
            (``attention_backend.break_even``); 0 = no minimum.
        probe_blocks: on CUDA, the decision is first taken on the last ``probe_blocks`` query blocks of
            a row (rows longer than twice that), so a dense row pays a fraction of the estimate; 0 = off.
        device_decide_below: on CUDA, a layer whose latest estimated density is under this share of the
            break-even decides its rows on the device: each row is still estimated and runs dense when its
            estimate is above the break-even, but the host never waits for the counts (no sync per layer);
            nearer the break-even the host reads them (and the probe applies). In [0, 1]; 0 = always the host.
        dense_margin: on CUDA, a layer whose latest estimated density at a context length is at least this
            multiple of the break-even runs dense there with no estimate (re-estimated every 16 calls,
            :class:`attention_backend.layer_gate.LayerGate`); nearer the break-even every call is estimated
            and its rows decided. >= 1; 1, the default, skips every estimate that last came out dense (A/B in one
            engine on an H100, bench/results/xattn_real/notes.md: Gemma-3-270M 32K 0.90x -> 1.00x FA3 against 1.5,
            16K-64K no worse anywhere, SmolLM2-135M 32K 1.07x -> 1.16x).
        time_paths: on CUDA, each layer times its attention both ways per context length (CUDA events, no
            sync): vLLM's dense kernel with no estimate, and XAttention (estimate, decide, attend); once both
            are timed it runs the cheaper there and re-times the other now and then
            (:mod:`attention_backend.layer_gate`). False: the density rules alone decide. None, the default:
            on where the sparse blocks run on the Triton kernel, off where they run on fa3 (measured on an H100:
            SmolLM2-135M, Triton, 32K 0.79x -> 1.11x FA3 with them; Gemma-3-270M, fa3, 128K 1.23x without them
            and 1.04x with them, the layers' fa3 spans overstating XAttention's cost; bench/results/xattn_real).
        chunk_tokens: query tokens processed per step by the torch path (bounds peak memory;
            rounded up to a multiple of ``block_size``).
        enabled: False keeps every prefill dense (the vLLM backend then only delegates).
        sparse_kernel: on CUDA, what computes the selected blocks: ``fa3`` (vLLM's FlashAttention 3 over
            per-block page tables, ``attention_backend.block_pages``; needs a vLLM KV block size dividing
            ``block_size``), ``triton`` (our kernel, any page size), or ``auto``, the default (fa3 where the card's
            break-even table says it was measured faster at this head dim and the page size allows, else
            triton, said once in the log; attention_backend/README.md).
        estimate_fp8: on CUDA sm_90+, the estimation GEMM runs on fp8 (e4m3) copies of q and k
            (``kernels.estimate``); elsewhere it stops at start-up. At S >= 16 on sm_90 that is the library
            GEMM grouped over KV heads (``kernels.estimate.FP8_GEMM_TILES``, each reshaped row scaled on its own):
            3.0 % of FA3 at 128K on an H100 where the bf16 fused kernel takes 4.8 %; it changed 0.31 % of the
            (head, query block, key block) selection decisions on SmolLM2 at 4K. Off by default: it changes the
            estimate's rounding
            (bench/results/xattn_kernels/notes.md).
    """

    block_size: int = 128
    stride: int = 8
    threshold: float | ThresholdTable = 0.9
    min_sparse_len: int = 8192
    chunk_tokens: int = 4096
    enabled: bool = True
    dense_above: float | None = None
    min_sparse_ms: float | None = None
    probe_blocks: int = 8
    device_decide_below: float = 0.8
    dense_margin: float = 1.0
    time_paths: bool | None = None
    sparse_kernel: str = "auto"
    estimate_fp8: bool = False

    def __post_init__(self) -> None:
        for name in ("block_size", "stride", "min_sparse_len", "chunk_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"XAttentionConfig.{name}: expected a positive int, got {value!r}")
        if isinstance(self.probe_blocks, bool) or not isinstance(self.probe_blocks, int) or self.probe_blocks < 0:
            raise ValueError(f"XAttentionConfig.probe_blocks: expected an int >= 0, got {self.probe_blocks!r}")
        below = self.device_decide_below
        if isinstance(below, bool) or not isinstance(below, int | float) or not 0.0 <= below <= 1.0:
            raise ValueError(f"XAttentionConfig.device_decide_below: expected a share in [0, 1], got {below!r}")
        object.__setattr__(self, "device_decide_below", float(below))
        margin = self.dense_margin
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not math.isfinite(margin) or margin < 1:
            raise ValueError(f"XAttentionConfig.dense_margin: expected a multiple of the break-even >= 1, got {margin!r}")
        object.__setattr__(self, "dense_margin", float(margin))
        if self.sparse_kernel not in SPARSE_KERNELS:
            raise ValueError(f"XAttentionConfig.sparse_kernel: expected one of {SPARSE_KERNELS}, got {self.sparse_kernel!r}")
        for name in ("enabled", "estimate_fp8", "time_paths"):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (name == "time_paths" and value is None):  # None: by kernel
                raise ValueError(f"XAttentionConfig.{name}: expected a bool, got {value!r}")
        if self.block_size % self.stride:
            raise ValueError(
                f"XAttentionConfig.stride: expected a divisor of block_size={self.block_size}, "
                f"got {self.stride}"
            )
        if self.dense_above is not None:
            if isinstance(self.dense_above, bool) or not isinstance(self.dense_above, int | float):
                raise ValueError(f"XAttentionConfig.dense_above: expected a density in (0, 1], got {self.dense_above!r}")
            _check_tau(float(self.dense_above), "dense_above", what="a density")
            object.__setattr__(self, "dense_above", float(self.dense_above))
        if self.min_sparse_ms is not None:
            ms = self.min_sparse_ms
            if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms) or ms < 0:
                raise ValueError(f"XAttentionConfig.min_sparse_ms: expected a number of ms >= 0, got {ms!r}")
            object.__setattr__(self, "min_sparse_ms", float(ms))
        if isinstance(self.threshold, int | float) and not isinstance(self.threshold, bool):
            _check_tau(float(self.threshold), "threshold")
            object.__setattr__(self, "threshold", float(self.threshold))
        elif isinstance(self.threshold, Sequence) and not isinstance(self.threshold, str):
            table = _as_table(self.threshold)
            object.__setattr__(self, "threshold", table)
        else:
            raise ValueError(
                f"XAttentionConfig.threshold: expected a float in (0, 1] or a [layers][heads] table, "
                f"got {type(self.threshold).__name__}"
            )

    @property
    def has_table(self) -> bool:
        return isinstance(self.threshold, tuple)

    def thresholds(self, num_heads: int, layer: int | None = None) -> list[float]:
        """Per-query-head tau for ``layer``: ``num_heads`` floats. ``layer`` is required with a table."""
        if not isinstance(self.threshold, tuple):
            return [self.threshold] * num_heads
        if layer is None:
            raise ValueError("XAttentionConfig.thresholds: a per-layer table needs a layer index, got None")
        if not 0 <= layer < len(self.threshold):
            raise ValueError(
                f"XAttentionConfig.thresholds: layer expected in [0, {len(self.threshold)}), got {layer}"
            )
        row = self.threshold[layer]
        if len(row) != num_heads:
            raise ValueError(
                f"XAttentionConfig.thresholds: layer {layer} of the table has {len(row)} heads, "
                f"expected {num_heads} (the query heads of the model, or of one tensor-parallel rank after "
                "for_tensor_parallel)"
            )
        return list(row)

    def for_tensor_parallel(self, rank: int, size: int) -> XAttentionConfig:
        """This tensor-parallel rank's view of the config (the same config when ``size`` is 1 or tau a float).

        A table lists the FULL model's query heads per layer; vLLM gives rank ``r`` of ``size`` the query
        heads ``[r * H / size, (r + 1) * H / size)`` (``QKVParallelLinear`` splits them contiguously), so
        each row keeps that slice and ``thresholds(H / size, layer)`` then answers for the rank's heads."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or not 0 <= rank < size:
            raise ValueError(f"XAttentionConfig.for_tensor_parallel: expected 0 <= rank < size, got {rank}, {size}")
        if size == 1 or not isinstance(self.threshold, tuple):
            return self
        for i, row in enumerate(self.threshold):
            if len(row) % size:
                raise ValueError(
                    f"XAttentionConfig.threshold[{i}]: expected a head count divisible by the tensor-parallel "
                    f"size {size}, got {len(row)} heads"
                )
        table = tuple(row[rank * (len(row) // size) : (rank + 1) * (len(row) // size)] for row in self.threshold)
        return replace(self, threshold=table)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if isinstance(self.threshold, tuple):
            data["threshold"] = [list(row) for row in self.threshold]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> XAttentionConfig:
        """Build from a JSON-like mapping (vLLM ``additional_config["xattn"]``); unknown keys are errors.

        ``threshold_table`` (a path to a JSON file written by ``xedge calibrate-xattn``) is accepted as
        an alternative to an inline ``threshold``.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"xattn config: expected a mapping of settings, got {type(data).__name__} {data!r:.80}")
        known = {f for f in cls.__dataclass_fields__}
        data = dict(data)
        table_path = data.pop("threshold_table", None)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"xattn config: unknown keys {unknown}; valid keys: {sorted(known | {'threshold_table'})}")
        if table_path is not None:
            if "threshold" in data:
                raise ValueError("xattn config: give either 'threshold' or 'threshold_table', not both")
            data["threshold"], recorded = read_threshold_table(table_path)
        config = cls(**data)
        if table_path is not None:
            _check_table_settings(Path(table_path), recorded, config)
        return config


def _check_tau(value: float, where: str, what: str = "tau") -> None:
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(f"XAttentionConfig.{where}: expected {what} in (0, 1], got {value!r}")


def _as_table(rows: Sequence[Any]) -> ThresholdTable:
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence) or not rows:
        raise ValueError(f"XAttentionConfig.threshold: expected a non-empty [layers][heads] table, got {rows!r:.80}")
    table = []
    for i, row in enumerate(rows):
        if isinstance(row, str | bytes) or not isinstance(row, Sequence) or not row:
            raise ValueError(f"XAttentionConfig.threshold[{i}]: expected a non-empty list of floats, got {row!r:.80}")
        values = []
        for j, x in enumerate(row):
            try:
                if isinstance(x, bool | str | bytes):  # float() would take True, "0.5"
                    raise TypeError
                value = float(x)
            except (TypeError, ValueError):
                raise ValueError(f"XAttentionConfig.threshold[{i}][{j}]: expected tau in (0, 1], got {x!r:.80}") from None
            _check_tau(value, f"threshold[{i}][{j}]")
            values.append(value)
        table.append(tuple(values))
    return tuple(table)


def load_threshold_table(path: str | Path) -> ThresholdTable:
    """Read a calibration file (``{"threshold": [[...], ...], ...}`` or a bare list) as a table; every
    error names the file."""
    return read_threshold_table(path)[0]


def read_threshold_table(path: str | Path) -> tuple[ThresholdTable, dict[str, Any]]:
    """:func:`load_threshold_table`, plus the file's other entries (``xedge calibrate-xattn`` records the
    ``stride`` and ``block_size`` it calibrated at; {} for a bare list)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"xattn threshold table: expected an existing JSON file, got {str(path)!r}")
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "threshold" not in data:
            raise ValueError(f"expected a 'threshold' key, got keys {sorted(data)}")
        if isinstance(data, dict):
            return _as_table(data["threshold"]), data
        return _as_table(data), {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"xattn threshold table {str(path)!r}: {exc}") from None


def additional_config_from_flags(
    *,
    stride: int | None = None,
    threshold: float | None = None,
    min_len: int | None = None,
    threshold_table: str | Path | None = None,
    dense_above: float | None = None,
    min_sparse_ms: float | None = None,
    sparse_kernel: str | None = None,
    estimate_fp8: bool | None = None,
    time_paths: bool | None = None,
    dense_margin: float | None = None,
) -> dict[str, Any]:
    """Map ``xedge serve --xattn-*`` flags to vLLM's ``additional_config`` (``{"xattn": {...}}``).

    Flags left as None keep the defaults of :class:`XAttentionConfig`. The result is validated here
    (ValueError with expected vs got), so a bad flag fails before vLLM starts. A threshold table is
    inlined, so the engine processes do not need to read the file. Errors name the flag.
    """
    section: dict[str, Any] = {}
    if stride is not None:
        section["stride"] = stride
    if min_len is not None:
        section["min_sparse_len"] = min_len
    if threshold is not None and threshold_table is not None:
        raise ValueError("--xattn-threshold and --xattn-threshold-table: expected at most one, got both")
    if dense_above is not None:
        section["dense_above"] = dense_above
    if min_sparse_ms is not None:
        section["min_sparse_ms"] = min_sparse_ms
    if threshold is not None:
        section["threshold"] = threshold
    if sparse_kernel is not None:
        section["sparse_kernel"] = sparse_kernel
    if estimate_fp8 is not None:
        section["estimate_fp8"] = estimate_fp8
    if time_paths is not None:
        section["time_paths"] = time_paths
    if dense_margin is not None:
        section["dense_margin"] = dense_margin
    recorded: dict[str, Any] = {}
    try:
        if threshold_table is not None:
            table, recorded = read_threshold_table(threshold_table)
            section["threshold"] = [list(row) for row in table]
        config = XAttentionConfig.from_dict(section)
    except ValueError as exc:
        raise ValueError(f"{_flag_of(str(exc), threshold_table is not None)}: {exc}") from None
    if threshold_table is not None:
        _check_table_settings(Path(threshold_table), recorded, config)
    return {ADDITIONAL_CONFIG_KEY: section}


def _check_table_settings(path: Path, recorded_settings: Mapping[str, Any], config: XAttentionConfig) -> None:
    """A table from ``xedge calibrate-xattn`` records the stride and block it was calibrated at
    (``recorded_settings``, from :func:`read_threshold_table`); its taus reach their recall target only there,
    so serving it at another stride or block stops at start-up."""
    for key, flag in (("stride", "--xattn-stride"), ("block_size", "the block size")):
        recorded = recorded_settings.get(key)
        if recorded is not None and recorded != getattr(config, key):
            raise ValueError(
                f"--xattn-threshold-table: {str(path)!r} was calibrated at {key} {recorded!r}, but the server runs "
                f"{getattr(config, key)} ({flag}): serve at {recorded!r} or calibrate again at {getattr(config, key)}"
            )


FLAGS = {
    "stride": "--xattn-stride",
    "min_sparse_len": "--xattn-min-len",
    "dense_above": "--xattn-dense-above",
    "min_sparse_ms": "--xattn-min-sparse-ms",
    "threshold": "--xattn-threshold",
    "sparse_kernel": "--xattn-sparse-kernel",
    "estimate_fp8": "--xattn-estimate-fp8",
    "time_paths": "--xattn-time-paths",
    "dense_margin": "--xattn-dense-margin",
}
"""``xedge serve`` flag of each config field (errors name the flag the user typed)."""


def _flag_of(message: str, from_table: bool) -> str:
    if "threshold table" in message or (from_table and "threshold" in message):
        return "--xattn-threshold-table"
    for name, flag in FLAGS.items():
        if f"XAttentionConfig.{name}" in message:
            return flag
    return "--xattn-*"
