import re

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


def test_a_calibrated_table_is_served_only_at_its_stride_and_block(tmp_path):
    """``xedge calibrate-xattn`` records S and B; its taus reach their recall target only there."""
    table = tmp_path / "cal.json"
    table.write_text('{"threshold": [[0.5, 0.9]], "stride": 16, "block_size": 128}')
    assert additional_config_from_flags(stride=16, threshold_table=table)["xattn"]["stride"] == 16
    assert XAttentionConfig.from_dict({"threshold_table": str(table), "stride": 16}).stride == 16
    with pytest.raises(ValueError, match=r"^--xattn-threshold-table: .*cal.json' was calibrated at stride 16, but the server runs 8"):
        additional_config_from_flags(threshold_table=table)  # the default stride is 8
    with pytest.raises(ValueError, match="calibrated at stride 16"):
        XAttentionConfig.from_dict({"threshold_table": str(table)})
    table.write_text('{"threshold": [[0.5, 0.9]], "stride": 8, "block_size": 64}')
    with pytest.raises(ValueError, match="calibrated at block_size 64, but the server runs 128"):
        additional_config_from_flags(threshold_table=table)


def test_a_section_that_is_not_a_mapping_is_one_line():
    with pytest.raises(ValueError, match="^xattn config: expected a mapping of settings, got float 0.9"):
        XAttentionConfig.from_dict(0.9)  # type: ignore[arg-type]


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


def test_non_finite_q_or_k_rejected_before_any_work():
    """NaN / inf in q or k used to come out as NaN block scores and NaN attention with no error."""
    from attention_backend.calibrate import true_block_mass

    q, k, v = qkv(40, 40, 4, 2, 8)
    cfg = XAttentionConfig(block_size=16, stride=4)
    bad_q, bad_k = q.clone(), k.clone()
    bad_q[3, 0, 0] = float("nan")
    bad_k[5, 1, 2] = float("inf")
    mask = torch.ones(4, 3, 3, dtype=torch.bool)
    for name, qq, kk in (("q", bad_q, k), ("k", q, bad_k)):
        with pytest.raises(ValueError, match=f"^{name}: expected finite values, got 1 NaN/inf"):
            xattention_prefill(qq, kk, v, cfg)
        with pytest.raises(ValueError, match=f"^{name}: expected finite values"):
            estimate_block_scores(qq, kk, block_size=16, stride=4)
        with pytest.raises(ValueError, match=f"^{name}: expected finite values"):
            block_sparse_attention(qq, kk, v, mask, block_size=16)
        with pytest.raises(ValueError, match=f"^{name}: expected finite values"):
            true_block_mass(qq, kk, block_size=16)
    with pytest.raises(ValueError, match="finite non-negative"):
        select_blocks(torch.full((4, 2, 2), float("nan")), 0.5)
    with pytest.raises(ValueError, match="finite non-negative"):
        select_blocks(-torch.rand(4, 2, 2), 0.5)


def test_the_engine_path_lets_non_finite_activations_through_as_dense_attention_would():
    """``check_finite=False`` (the vLLM CPU adapter): no exception that would stop the engine for every tenant;
    a NaN query spoils that query's rows only, like dense attention, and finite inputs give the same output."""
    q, k, v = qkv(40, 40, 4, 2, 8)
    cfg = XAttentionConfig(block_size=16, stride=4, threshold=1.0)
    ref, _ = xattention_prefill(q, k, v, cfg)
    same, _ = xattention_prefill(q, k, v, cfg, check_finite=False)
    assert torch.equal(ref, same)
    bad_q = q.clone()
    bad_q[37, 0, 0] = float("nan")  # the last query block's token: other blocks' scores stay finite
    out, _ = xattention_prefill(bad_q, k, v, cfg, check_finite=False)
    assert torch.isnan(out[37, 0]).all()
    assert torch.equal(out[:32], ref[:32])


def test_empty_heads_head_dim_or_q_longer_than_k_rejected():
    q, k, v = qkv(40, 40, 4, 2, 8)
    cfg = XAttentionConfig(block_size=16, stride=4)
    with pytest.raises(ValueError, match=r"head dim >= 1"):  # was a ZeroDivisionError in the default scale
        xattention_prefill(q[..., :0], k[..., :0], v[..., :0], cfg)
    with pytest.raises(ValueError, match=r"Hq=0"):
        xattention_prefill(q[:, :0], k, v, cfg)
    with pytest.raises(ValueError, match=r"expected Lq <= Lk .* got Lq=40, Lk=20"):
        xattention_prefill(q, k[:20], v[:20], cfg)
    for scale in (float("inf"), float("nan")):  # inf used to pass and give NaN scores and output
        with pytest.raises(ValueError, match="^scale: expected a positive finite float"):
            xattention_prefill(q, k, v, cfg, scale=scale)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("hello", "Expecting value"),
        ('{"thresholds": [[0.5]]}', "expected a 'threshold' key"),
        ('{"threshold": [[null, 0.5]]}', r"threshold\[0\]\[0\]: expected tau in \(0, 1\], got None"),
        ('{"threshold": [["0.5"]]}', r"threshold\[0\]\[0\]: expected tau"),
        ('{"threshold": [[true, 0.5]]}', r"threshold\[0\]\[0\]: expected tau"),
        ('{"threshold": [[NaN, 0.5]]}', r"threshold\[0\]\[0\]: expected tau in \(0, 1\], got nan"),
        ('{"threshold": [[0.5, 1.5]]}', r"threshold\[0\]\[1\]: expected tau in \(0, 1\], got 1.5"),
        ('{"threshold": 0.5}', "non-empty"),
        ("[[0.5], 3]", r"threshold\[1\]: expected a non-empty list"),
    ],
)
def test_bad_threshold_table_file_is_refused_naming_the_file_and_the_flag(tmp_path, text, match):
    from attention_backend.config import load_threshold_table

    path = tmp_path / "my-table.json"
    path.write_text(text)
    named = f"xattn threshold table '{re.escape(str(path))}': .*{match}"
    with pytest.raises(ValueError, match=f"^{named}"):
        load_threshold_table(path)
    with pytest.raises(ValueError, match=f"^--xattn-threshold-table: {named}"):
        additional_config_from_flags(threshold_table=path)
    with pytest.raises(ValueError, match="threshold table"):
        XAttentionConfig.from_dict({"threshold_table": str(path)})


def test_calibrate_heads_rejects_bad_tolerance_and_shapes():
    """A negative tolerance used to bisect forever and NaN gave NaN taus; mismatched scores / mass failed deep
    inside torch (RuntimeError / IndexError)."""
    from attention_backend.calibrate import calibrate_heads, true_block_mass

    q, k, _ = qkv(40, 40, 4, 2, 8)
    scores = estimate_block_scores(q, k, block_size=16, stride=4)
    mass = true_block_mass(q, k, block_size=16)
    taus = calibrate_heads(scores, mass, block_size=16, q_offset=0)
    assert taus.shape == (4,) and bool(((taus > 0) & (taus <= 1)).all())
    for tol in (0.0, -1.0, float("nan"), 1.0):
        with pytest.raises(ValueError, match=r"^tol: expected a float in \(0, 1\)"):
            calibrate_heads(scores, mass, block_size=16, q_offset=0, tol=tol)
    with pytest.raises(ValueError, match=r"^scores: expected shape \[Hq, nqb, nkb\] = \(4, 3, 3\)"):
        calibrate_heads(scores[:2], mass, block_size=16, q_offset=0)
    with pytest.raises(ValueError, match=r"^scores: expected shape \[Hq, nqb, nkb\] = \(4, 5, 3\)"):
        calibrate_heads(scores, mass, block_size=8, q_offset=0)
    with pytest.raises(ValueError, match="^block_size: expected a positive int"):
        true_block_mass(q, k, block_size=0)
    with pytest.raises(ValueError, match="^chunk_tokens: expected a positive int"):
        true_block_mass(q, k, block_size=16, chunk_tokens=0)
