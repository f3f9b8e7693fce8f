"""Markdown tables from the benchmarks' JSON lines (for reports/performance.md).

python benchmarks/summarise.py reports/perf_cpu/*.jsonl
"""

from __future__ import annotations

import json
import sys


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0 or 1e-2 <= abs(v) < 1e4:
            return f"{v:.{digits}f}".rstrip("0").rstrip(".")
        return f"{v:.{digits}g}"
    return str(v)


def condense_table(rows: list[dict]) -> list[str]:
    out = [
        "| method | ipc | mode | s / outer iter | ratio literal/this | max abs diff vs literal "
        "| GFLOP / outer iter | achieved GFLOP/s | peak GPU GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['method']} | {r['ipc']} | {r['mode']} | {fmt(r['seconds_per_outer'])} "
            f"| {fmt(r['ratio_literal_over_this'])} | {fmt(r['max_abs_diff_vs_literal'], 2)} "
            f"| {fmt(r['flops_per_outer'] / 1e9 if r['flops_per_outer'] else None)} "
            f"| {fmt(r['achieved_flops_per_s'] / 1e9 if r['achieved_flops_per_s'] else None)} "
            f"| {fmt(r['peak_gpu_gb'])} |"
        )
    return out


def evaluate_table(rows: list[dict]) -> list[str]:
    out = [
        "| mode | nets | E timed | s (all nets) | s / net | images/s | vs literal | vs sequential "
        "| acc mean +- std | GFLOP / net | achieved GFLOP/s | peak GPU GB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['mode']} | {r['num_nets']} | {r['epochs']} | {fmt(r['seconds'])} "
            f"| {fmt(r['seconds_per_net'])} | {fmt(r['images_per_s'])} | {fmt(r['ratio_vs_literal'])} "
            f"| {fmt(r['ratio_vs_sequential'])} | {r['acc_mean']:.3f} +- {r['acc_std']:.3f} "
            f"| {fmt(r['flops_per_net'] / 1e9)} | {fmt(r['achieved_flops_per_s'] / 1e9)} "
            f"| {fmt(r['peak_gpu_gb'])} |"
        )
    return out


def memory_table(rows: list[dict]) -> list[str]:
    out = [
        "| method | real images | real_chunk setting -> chunk | s | peak GPU GB | peak RSS GB | images sum |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['method']} | - | {r['real_chunk_setting']} | error: {r['error']} | | | |")
            continue
        out.append(
            f"| {r['method']} | {r['real_images']} | {r['real_chunk_setting']} -> {fmt(r['real_chunk'])} "
            f"| {fmt(r['seconds'])} | {fmt(r['peak_gpu_gb'])} | {fmt(r['peak_rss_gb'])} "
            f"| {r['images_sum']:.6f} |"
        )
    return out


def main(paths: list[str]) -> None:
    rows = [json.loads(line) for p in paths for line in open(p) if line.strip()]
    for kind, table in (("condense", condense_table), ("evaluate", evaluate_table), ("memory", memory_table)):
        chosen = [r for r in rows if r.get("bench") == kind]
        if chosen:
            print(f"\n### {kind} ({chosen[0].get('device', '?')})\n")
            print("\n".join(table(chosen)))


if __name__ == "__main__":
    main(sys.argv[1:])
