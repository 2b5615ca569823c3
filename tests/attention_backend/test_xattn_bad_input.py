import pytest
import torch

from attention_backend import (
    XAttentionConfig,
    block_sparse_attention,
    estimate_block_scores,
    select_blocks,
    xattention_prefill,
)
from attention_backend.config import additional_config_from_flags
from tests.attention_backend.xattn_helpers import qkv


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 1.5}, r"tau in \(0, 1\]"),
        ({"threshold": -0.1}, r"tau in \(0, 1\]"),
        ({"threshold": 0.0}, r"tau in \(0, 1\]"),
        ({"threshold": float("nan")}, r"tau in \(0, 1\]"),
        ({"dense_above": 0.0}, r"dense_above: expected a density in \(0, 1\]"),
        ({"dense_above": 1.2}, r"dense_above: expected a density in \(0, 1\]"),
        ({"threshold": ((0.5, 2.0),)}, r"threshold\[0\]\[1\]"),
        ({"threshold": ()}, "non-empty"),
        ({"stride": 6}, "divisor of block_size=128"),
        ({"block_size": 0}, "positive int"),
        ({"min_sparse_len": -1}, "positive int"),
        ({"sparse_kernel": "cuda"}, r"sparse_kernel: expected one of \('auto', 'fa3', 'triton'\)"),
        ({"estimate_fp8": "yes"}, r"estimate_fp8: expected a bool"),
    ],
)
def test_config_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        XAttentionConfig(**kwargs)


def test_from_dict_and_flags(tmp_path):
    with pytest.raises(ValueError, match="unknown keys"):
        XAttentionConfig.from_dict({"treshold": 0.9})
    table = tmp_path / "t.json"
    table.write_text('{"threshold": [[0.5, 0.9], [1.0, 0.2]]}')
    cfg = XAttentionConfig.from_dict({"threshold_table": str(table), "stride": 16})
    assert cfg.thresholds(2, layer=1) == [1.0, 0.2] and cfg.stride == 16
    extra = additional_config_from_flags(stride=16, min_len=1024, threshold_table=table)
    assert extra == {"xattn": {"stride": 16, "min_sparse_len": 1024, "threshold": [[0.5, 0.9], [1.0, 0.2]]}}
    assert XAttentionConfig.from_dict(extra["xattn"]) == cfg.__class__(stride=16, min_sparse_len=1024, threshold=cfg.threshold)
    assert additional_config_from_flags() == {"xattn": {}}
    with pytest.raises(ValueError, match="^--xattn-stride: .*divisor"):
        additional_config_from_flags(stride=7)
    with pytest.raises(ValueError, match=r"^--xattn-threshold: .*\(0, 1\]"):
        additional_config_from_flags(threshold=0.0)
    with pytest.raises(ValueError, match="^--xattn-dense-above: "):
        additional_config_from_flags(dense_above=1.5)
    with pytest.raises(ValueError, match="^--xattn-min-len: "):
        additional_config_from_flags(min_len=0)
    assert additional_config_from_flags(dense_above=0.4) == {"xattn": {"dense_above": 0.4}}
    with pytest.raises(ValueError, match="^--xattn-sparse-kernel: "):
        additional_config_from_flags(sparse_kernel="flash")
    assert additional_config_from_flags(sparse_kernel="fa3") == {"xattn": {"sparse_kernel": "fa3"}}
    assert additional_config_from_flags(estimate_fp8=True) == {"xattn": {"estimate_fp8": True}}
    with pytest.raises(ValueError, match="^--xattn-estimate-fp8: "):
        additional_config_from_flags(estimate_fp8=1)  # type: ignore[arg-type]
    assert additional_config_from_flags(time_paths=False) == {"xattn": {"time_paths": False}}
    with pytest.raises(ValueError, match="^--xattn-time-paths: "):
        additional_config_from_flags(time_paths="no")  # type: ignore[arg-type]
    assert additional_config_from_flags(dense_margin=1.5) == {"xattn": {"dense_margin": 1.5}}
    with pytest.raises(ValueError, match="^--xattn-dense-margin: .*>= 1"):
        additional_config_from_flags(dense_margin=0.5)
    with pytest.raises(ValueError, match="at most one"):
        additional_config_from_flags(threshold=0.9, threshold_table=table)
    with pytest.raises(ValueError, match="^--xattn-threshold-table: .*existing JSON file"):
        additional_config_from_flags(threshold_table=tmp_path / "missing.json")


def test_tensor_inputs_rejected():
    q, k, v = qkv(32, 32, 4, 2, 8)
    cfg = XAttentionConfig(block_size=16, stride=4)
    with pytest.raises(ValueError, match="Hq a multiple of Hkv"):
        xattention_prefill(q[:, :3], k, v, cfg)
    with pytest.raises(ValueError, match="3 dims"):
        xattention_prefill(q[0], k, v, cfg)
    with pytest.raises(ValueError, match="head dim 8"):
        xattention_prefill(q, k[..., :4], v[..., :4], cfg)
    with pytest.raises(ValueError, match="dtype torch.float32"):
        xattention_prefill(q, k.double(), v.double(), cfg)
    with pytest.raises(ValueError, match="floating dtype"):
        xattention_prefill(q.int(), k.int(), v.int(), cfg)
    with pytest.raises(ValueError, match="shape of k"):
        xattention_prefill(q, k, v[:10], cfg)
    with pytest.raises(ValueError, match=r"q_offset: expected an int in \[0, Lk - Lq\]"):
        xattention_prefill(q, k, v, cfg, q_offset=3)
    with pytest.raises(ValueError, match=r"q_offset"):
        xattention_prefill(q, k[:20], v[:20], cfg)
    with pytest.raises(ValueError, match="divisor of block_size=16"):
        estimate_block_scores(q, k, block_size=16, stride=5)
    with pytest.raises(ValueError, match=r"tau in \[0, 1\]"):
        select_blocks(torch.rand(4, 2, 2), 1.2)
    with pytest.raises(ValueError, match="one per query head"):
        select_blocks(torch.rand(4, 2, 2), [0.5, 0.5])
    with pytest.raises(ValueError, match="shape"):
        block_sparse_attention(q, k, v, torch.ones(4, 1, 2, dtype=torch.bool), block_size=16)
    with pytest.raises(ValueError, match="diagonal"):
        block_sparse_attention(q, k, v, torch.zeros(4, 2, 2, dtype=torch.bool), block_size=16)
    with pytest.raises(ValueError, match="XAttentionConfig"):
        xattention_prefill(q, k, v, {"stride": 4})
