"""Check what xedge's vLLM adapters rely on against extracted vLLM source trees (no vLLM import).

    python scripts/vllm_compat_check.py ROOT [ROOT ...] [--json OUT] [--details]

ROOT is a folder holding ``vllm/`` (an extracted wheel: ``pip download --no-deps vllm==X`` and unzip
``vllm/**/*.py``; or a site-packages). For each tree and adapter (``attention``, ``prefix_cache``,
``launch``, ``verify``, ``kv_tier``) it prints ok / FAIL, and for every optional requirement whether it is present, with the
file and line it was found at (``--details``: every requirement). Exit status 1 when any tree misses a
required symbol. The requirements are the adapters' own lists, so this checks exactly what they check
at start-up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attention_backend.vllm.contract import Report, Requirement, check_tree  # noqa: E402
from attention_backend.vllm.requirements import REQUIREMENTS as ATTENTION  # noqa: E402
from server.engine.kv_tier.vllm_requirements import REQUIREMENTS as KV_TIER  # noqa: E402
from server.engine.prefix_cache.vllm_requirements import REQUIREMENTS as PREFIX_CACHE  # noqa: E402
from server.engine.verify.vllm_requirements import REQUIREMENTS as VERIFY  # noqa: E402
from server.launch.vllm_cmd import FLAG_REQUIREMENTS as LAUNCH  # noqa: E402

ADAPTERS: dict[str, tuple[Requirement, ...]] = {
    "attention": ATTENTION,
    "prefix_cache": PREFIX_CACHE,
    "launch": LAUNCH,
    "verify": VERIFY,
    "kv_tier": KV_TIER,
}


def _report_dict(adapter: str, report: Report) -> dict:
    return {
        "adapter": adapter,
        "version": report.version,
        "root": str(report.root),
        "ok": report.ok,
        "failures": report.failures,
        "results": [
            {
                "requirement": r.requirement.label,
                "status": r.status,
                "where": r.where,
                "why": r.requirement.why,
            }
            for r in report.results
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders that hold vllm/")
    parser.add_argument("--json", type=Path, help="write every result here")
    parser.add_argument(
        "--details", action="store_true", help="print every requirement, not only notable ones"
    )
    args = parser.parse_args(argv)

    rows, failed = [], False
    print(f"{'vLLM':<10} {'adapter':<13} {'result':<6} notes")
    for root in args.roots:
        for adapter, requirements in ADAPTERS.items():
            report = check_tree(root, requirements)
            rows.append(_report_dict(adapter, report))
            failed |= not report.ok
            print(f"{report.version:<10} {adapter:<13} {'ok' if report.ok else 'FAIL':<6}")
            for failure in report.failures:
                print(f"{'':<31}MISSING {failure}")
            for r in report.results:
                if args.details or (r.requirement.optional and r.status != "MISSING"):
                    print(f"{'':<31}{r.status:<7} {r.requirement.label} [{r.where}]")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
