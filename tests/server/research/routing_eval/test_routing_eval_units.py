"""Pieces of `xedge eval routing` and `xedge train-router` that need no model: scoring, layer specs,
the score recorder, the stateless link's accounting, the delay transport, summaries and ratios."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from client_edge._base_client import RequestOptions
from client_edge.gates.confidence import EntropyGate, Top1ProbGate
from client_edge.result import GenerationResult, TokenSource
from client_edge.runner.base import StepOutput
from server.commands.train_router import parse_layers
from server.data_root import data_root
from server.research.routing_eval.delay import DelayTransport
from server.research.routing_eval.recorder import ScoreRecorder
from server.research.routing_eval.routing import add_agreement, summarise
from server.research.routing_eval.routing_report import ratios, table
from server.research.routing_eval.stateless import StatelessLink
from server.research.routing_eval.stats import wilson_interval
from server.research.routing_eval.tasks import (
    CSQA_PROMPT,
    GSM8K_PROMPT,
    Item,
    answer_letter,
    score_csqa,
    score_csqa_letter,
    score_gsm8k,
)

CSQA = Item("csqa", "q", "C", (("A", "dog"), ("B", "cat"), ("C", "sharing information")))
GSM = Item("gsm8k", "q", "1,234")


@pytest.mark.parametrize(
    ("text", "ok"),
    [("so \\boxed{1234}.", True), ("\\boxed{1234.0}", True), ("\\boxed{12} then \\boxed{1234}", True),
     ("The answer is 1234", True), ("\\boxed{1233}", False), ("no number", False)],
)  # fmt: skip
def test_gsm8k_scoring(text: str, ok: bool) -> None:
    assert score_gsm8k(text, GSM) is ok


@pytest.mark.parametrize(
    ("text", "ok"),
    [("Therefore, the answer is sharing information (c).", True), ("the answer is dog (A). No, (C)", True),
     ("Therefore, the answer is sharing information.", True), ("the answer is cat (b).", False), ("dunno", False),
     ("The answer is C.", True), ("The answer is A.", False), ("the answer is: c", True)],
)  # fmt: skip
def test_csqa_scoring(text: str, ok: bool) -> None:
    assert score_csqa(text, CSQA) is ok


@pytest.mark.parametrize(
    ("text", "letter"),
    [("C", "C"), (" C. sharing", "C"), ("\nC.", "C"), ("(C)", "C"), (" B", "B"), ("c", None),
     (" a dog", None), ("A dog", None), ("Answer", None), ("You are", None), ("", None), (" E\n", "E")],
)  # fmt: skip
def test_csqa_letter_takes_the_label_the_answer_starts_with(text: str, letter: str | None) -> None:
    assert answer_letter(text) == letter
    assert score_csqa_letter(text, CSQA) is (letter == "C")


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(17, 80)  # reference values of the Wilson score interval, z = 1.96
    assert (lo, hi) == (pytest.approx(0.1370, abs=1e-3), pytest.approx(0.3143, abs=1e-3))
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-3)
    assert wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_prompts_match_the_router_training_format() -> None:
    root = data_root() / "router_train"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}")
    d = json.loads((root / "csqa_train_cot.jsonl").open().readline())
    listing = "\n".join(f"{a}. {b}" for a, b in zip(d["choices"]["label"], d["choices"]["text"], strict=True))
    assert CSQA_PROMPT.format(question=d["question"], choices=listing) == d["prompt"]
    g = json.loads((root / "gsm8k_train_cot.jsonl").open().readline())
    question = g["prompt"].split("Question: ", 1)[1].removesuffix("\nSolution: ")
    assert GSM8K_PROMPT.format(question=question) == g["prompt"]


def test_parse_layers() -> None:
    assert parse_layers("0-2,5,7-8") == (0, 1, 2, 5, 7, 8)
    assert parse_layers(None) is None and parse_layers("") is None
    for bad in ("a-b", "5-2"):
        with pytest.raises(ValueError):
            parse_layers(bad)


def test_score_recorder_records_every_gate_per_answer_and_never_escalates() -> None:
    rec = ScoreRecorder({"top1": Top1ProbGate(), "entropy": EntropyGate()})
    step = StepOutput(np.zeros(4, np.float32), np.zeros(2, np.float32))
    for n in (3, 2):
        rec.reset()
        assert not any(rec.decide(step) for _ in range(n))
    assert [len(a) for a in rec.answers["top1"]] == [3, 2]
    assert rec.answers["entropy"][0][0] == pytest.approx(np.log(4))


def test_stateless_link_accounts_vllm_usage_and_bytes() -> None:
    seen: list[dict] = []

    def vllm(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"text": " x", "finish_reason": "stop"}], "usage": {
            "prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 8}}})  # fmt: skip

    link = StatelessLink.factory("http://vllm", "m", httpx.MockTransport(vllm))(
        "text", "fp", RequestOptions()
    )
    ans = link.escalate("hello world", 1, " x")
    assert ans.text == " x" and seen[0]["prompt"] == "hello world" and seen[0]["max_tokens"] == 1
    assert ans.finish_reason == "stop"  # vLLM ended on EOS, whose text it leaves out: the edge must stop too
    assert (link.usage.prompt_tokens, link.usage.cached_tokens, link.usage.computed_tokens) == (10, 8, 2)
    t = link.traffic()
    assert t.round_trips == 1 and t.bytes_sent > len("hello world") and t.bytes_received > 0
    with pytest.raises(ValueError, match="text"):
        StatelessLink.factory("http://vllm", "m")("token", "fp", RequestOptions())
    with pytest.raises(NotImplementedError):
        link.verify("a", "b")


def test_delay_transport_adds_the_round_trip_time() -> None:
    client = httpx.Client(transport=DelayTransport(30, httpx.MockTransport(lambda r: httpx.Response(200))))
    t0 = time.perf_counter()
    client.get("http://x/")
    assert time.perf_counter() - t0 >= 0.03


def _result(text: str, n: int, escalated: int, computed: int, requests: int) -> GenerationResult:
    r = GenerationResult(list(range(n)), text, [TokenSource.LOCAL] * n, "length", escalated_positions=escalated,
                         round_trips=requests, bytes_sent=100 * requests, token_times_s=[0.01] * n)  # fmt: skip
    r.usage.requests, r.usage.computed_tokens, r.usage.prompt_tokens = requests, computed, 10 * computed
    return r


def test_summaries_and_ratios() -> None:
    items = [CSQA, GSM]
    good = [_result("the answer is x (C)", 10, 2, 4, 2), _result("\\boxed{1234}", 10, 2, 4, 2)]
    bad = [_result("(A)", 10, 2, 4, 2), _result("\\boxed{1}", 10, 2, 4, 2)]
    s_gate = summarise("entropy@0.2", "entropy", "escalate", "stateful", 0.2, 1.0, 0.0, items, good)
    s_rand = summarise("random@0.2", "random", "escalate", "stateful", 0.2, 0.8, 0.0, items, bad)
    s_cloud = summarise("cloud-only", "random", "escalate", "stateful", None, 0.0, 0.0, items, good)
    s_less = summarise("stateless entropy@0.2", "entropy", "escalate", "stateless", 0.2, 1.0, 0.0, items,
                       [_result("", 10, 2, 40, 2), _result("", 10, 2, 40, 2)])  # fmt: skip
    assert s_gate.accuracy == 1.0 and s_rand.accuracy == 0.0 and s_gate.escalation_rate == pytest.approx(0.2)
    assert s_gate.computed_tokens_per_request == 2.0 and s_gate.token_time_p50_ms == pytest.approx(10.0)
    r = ratios([s_gate, s_rand, s_cloud, s_less])
    assert r["entropy@0.2"]["accuracy_minus_random_same_rate"] == 1.0
    assert r["stateless entropy@0.2"]["stateless_over_stateful_computed_tokens_per_request"] == pytest.approx(
        10.0
    )
    assert "entropy@0.2" in table([s_gate])
    assert s_gate.correct == 2 and s_gate.accuracy_ci95 == wilson_interval(2, 2)
    assert s_gate.answers == ["C", "1234"] and s_rand.answers == ["A", "1"]
    small = summarise("small-only", "recorder", "escalate", "none", None, None, 0.0, items, bad)
    vs = ratios([small, s_cloud])["cloud-only vs small-only"]
    assert (
        vs["accuracy_difference"] == 1.0 and vs["intervals_disjoint"] is False
    )  # 2 items: intervals overlap


def test_agreement_with_cloud_only_counts_same_parsed_answers_on_shared_items() -> None:
    items = [CSQA, CSQA, CSQA]
    cloud = summarise("cloud-only", "random", "escalate", "stateful", None, 0.0, 0.0, items,
                      [_result(t, 3, 3, 1, 1) for t in ("(A)", "(B)", "dunno")])  # fmt: skip
    edge = summarise("small-only", "recorder", "escalate", "none", None, None, 0.0, items,
                     [_result(t, 3, 0, 0, 0) for t in ("(A)", "(C)", "dunno")])  # fmt: skip
    short = summarise(
        "delay", "top1", "escalate", "stateful", 0.1, 0.5, 20.0, items[:1], [_result("(A)", 3, 1, 1, 1)]
    )
    add_agreement([edge, cloud, short])
    # item 3: neither gives an answer, which is no agreement
    assert edge.agreement_with_cloud == pytest.approx(1 / 3) and edge.agreement_items == 3
    assert edge.agreement_ci95 == wilson_interval(1, 3)
    assert short.agreement_with_cloud == 1.0 and short.agreement_items == 1
    assert cloud.agreement_with_cloud == pytest.approx(2 / 3)


def test_eval_refuses_an_mlp_router_trained_for_another_edge(tmp_path: Path) -> None:
    from server.commands.eval_routing import _check_router_fits_edge

    (tmp_path / "r.json").write_text(json.dumps({"keep_layers": [0, 1, 3]}))
    _check_router_fits_edge(tmp_path / "r", (0, 1, 3))
    with pytest.raises(ValueError, match="trained on an edge keeping layers"):
        _check_router_fits_edge(tmp_path / "r", None)
    (tmp_path / "full.json").write_text(json.dumps({"keep_layers": None}))
    _check_router_fits_edge(tmp_path / "full", None)
    with pytest.raises(ValueError):
        _check_router_fits_edge(tmp_path / "full", (0, 1))


def test_per_task_option_values() -> None:
    from server.commands.eval_routing import per_task

    tasks = ("csqa_letter", "gsm8k")
    assert per_task("40", tasks, "--n", minimum=1) == {"csqa_letter": 40, "gsm8k": 40}
    assert per_task("gsm8k=6, csqa_letter=40", tasks, "--n", minimum=1) == {"csqa_letter": 40, "gsm8k": 6}
    assert per_task("csqa_letter=0,gsm8k=2", tasks, "--d", minimum=0)["csqa_letter"] == 0
    # a known task that is not selected is ignored, so one spec serves --tasks csqa_letter too
    assert per_task("csqa_letter=4,gsm8k=6,csqa=1", tasks, "--n", minimum=1) == {"csqa_letter": 4, "gsm8k": 6}
    assert per_task("csqa_letter=4,gsm8k=6", ("csqa_letter",), "--n", minimum=1) == {"csqa_letter": 4}
    for bad, match in (("csqa_letter=40", "no value for"), ("csqa_letter=4,gsm9k=6", "unknown tasks"),
                       ("x", "N or task=N"), ("csqa_letter=a,gsm8k=1", "N or task=N"), ("0", ">= 1")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            per_task(bad, tasks, "--n", minimum=1)


def test_results_hold_one_block_per_task_and_rerender_recomputes_them(tmp_path: Path) -> None:
    from server.research.routing_eval.routing import PairSpec, RoutingEvalConfig, pair_json, task_block
    from server.research.routing_eval.routing_report import rerender, write

    pair = PairSpec("same-tokenizer", "d", "token", tmp_path, None, tmp_path)
    cloud = summarise("cloud-only", "random", "escalate", "stateful", None, 0.0, 0.0, [CSQA],
                      [_result("(C)", 4, 4, 1, 1)])  # fmt: skip
    small = summarise(
        "small-only", "recorder", "escalate", "none", None, None, 0.0, [CSQA], [_result("(A)", 4, 0, 0, 0)]
    )
    g_cloud = summarise("cloud-only", "random", "escalate", "stateful", None, 0.0, 0.0, [GSM],
                        [_result("\\boxed{1}", 4, 4, 1, 1)])  # fmt: skip
    doc = {"pair": pair_json(pair), "tasks": {
        "csqa_letter": task_block(RoutingEvalConfig(tasks=("csqa_letter",), max_new_tokens=4), 1, {}),
        "gsm8k": task_block(RoutingEvalConfig(tasks=("gsm8k",), max_new_tokens=48), 1, {})}}  # fmt: skip
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    write(doc, {"csqa_letter": [small, cloud], "gsm8k": [g_cloud]}, out_json, out_png, "t")
    saved = json.loads(out_json.read_text())
    assert [r["label"] for r in saved["tasks"]["csqa_letter"]["runs"]] == ["small-only", "cloud-only"]
    assert saved["tasks"]["csqa_letter"]["ratios"]["cloud-only vs small-only"]["accuracy_difference"] == 1.0
    assert (
        saved["tasks"]["gsm8k"]["runs"][0]["agreement_with_cloud"] == 1.0
    )  # per task: gsm8k's own cloud-only
    assert saved["tasks"]["csqa_letter"]["runs"][0]["agreement_with_cloud"] == 0.0
    assert saved["tasks"]["gsm8k"]["config"]["max_new_tokens"] == 48 and out_png.stat().st_size > 0
    saved["tasks"]["csqa_letter"]["ratios"] = {}
    out_json.write_text(json.dumps(saved))
    again = rerender(out_json, out_png)
    assert again["tasks"]["csqa_letter"]["ratios"]["cloud-only vs small-only"]["accuracy_difference"] == 1.0


def test_text_agreement_with_cloud_only() -> None:
    items = [GSM, GSM]
    cloud = summarise("cloud-only", "random", "escalate", "stateful", None, 0.0, 0.0, items,
                      [_result("abcd", 4, 4, 1, 1), _result("wxyz", 4, 4, 1, 1)])  # fmt: skip
    edge = summarise("small-only", "recorder", "escalate", "none", None, None, 0.0, items,
                     [_result("abcd", 4, 0, 0, 0), _result("wxQQ", 4, 0, 0, 0)])  # fmt: skip
    add_agreement([cloud, edge])
    assert edge.same_text_as_cloud == 0.5 and edge.text_prefix_agreement == pytest.approx((1.0 + 0.5) / 2)
    assert cloud.same_text_as_cloud == 1.0 and cloud.text_prefix_agreement == 1.0
    assert "txtpf" in table([cloud, edge])


def test_held_out_calibration_items_follow_the_evaluated_ones(tmp_path: Path) -> None:
    from server.research.routing_eval.routing import load_items

    row = {"question": "q{}", "choices": {"label": list("ABCDE"), "text": list("abcde")}, "answerKey": "A"}
    lines = [json.dumps({**row, "id": str(i), "question": f"q{i}"}) for i in range(7)]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "csqa_dev.jsonl").write_text("\n".join(lines) + "\n")
    evaluated = load_items(tmp_path, ("csqa_letter",), 4)
    held_out = load_items(tmp_path, ("csqa_letter",), 3, offset=4)
    assert len(evaluated) == 4 and len(held_out) == 3
    assert not {it.prompt for it in evaluated} & {it.prompt for it in held_out}
    assert any("q4" in it.prompt for it in held_out) and not any("q4" in it.prompt for it in evaluated)
    with pytest.raises(ValueError, match="has 7"):
        load_items(tmp_path, ("csqa_letter",), 4, offset=4)
