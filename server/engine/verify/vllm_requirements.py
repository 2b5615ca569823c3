"""What ``server.engine.verify.vllm_adapter`` relies on in vLLM (checked by ``vllm_contract``; no vLLM import).

The processor API (0.26 - 0.33: same module, classes and signatures), vLLM's own top-k / top-p so the
processor's distribution is the sampler's, and the order in the sampler that makes the rule exact: custom
processors see the logits before temperature, top-k and top-p are applied in ``Sampler.sample``.
"""

from __future__ import annotations

from attention_backend.vllm.contract import Requirement

_IFACE = "vllm.v1.sample.logits_processor.interface"
_SAMPLER = "vllm.v1.sample.sampler"

REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("class", _IFACE, "LogitsProcessor"),
    Requirement("method", _IFACE, "LogitsProcessor.__init__", ("self", "vllm_config", "device", "is_pin_memory"), exact=True),
    Requirement("method", _IFACE, "LogitsProcessor.apply", ("self", "logits"), exact=True),
    Requirement("method", _IFACE, "LogitsProcessor.update_state", ("self", "batch_update"), exact=True),
    Requirement("method", _IFACE, "LogitsProcessor.is_argmax_invariant", ("self",), exact=True),
    Requirement("method", _IFACE, "LogitsProcessor.validate_params", ("cls", "sampling_params"), exact=True),
    Requirement("class", _IFACE, "BatchUpdate"),
    *(Requirement("attr", _IFACE, f"BatchUpdate.{a}") for a in ("removed", "added", "moved")),
    Requirement("class", _IFACE, "MoveDirectionality"),
    Requirement("function", "vllm.v1.sample.ops.topk_topp_sampler", "apply_top_k_top_p", ("logits", "k", "p")),
    Requirement("attr", "vllm.sampling_params", "SamplingParams.extra_args"),
    Requirement(
        "source", _SAMPLER, "Sampler.forward", snippet="logits = self.apply_logits_processors(",
        why="custom processors run on the logits before sampling",
    ),
    Requirement(
        "source", _SAMPLER, "Sampler.sample", snippet="logits = self.apply_temperature(",
        why="temperature is applied after the processors, in sample()",
    ),
    Requirement("flag", "--logits-processors"),
)  # fmt: skip
