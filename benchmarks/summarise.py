"""Markdown tables from the benchmarks' JSON lines (for reports/performance.md).

python benchmarks/summarise.py reports/perf_cpu/*.jsonl       # the tables of these files
python benchmarks/summarise.py --gpu reports/perf_gpu          # the GPU section (make gpu-check)
python benchmarks/summarise.py --update-md reports/performance.md   # rewrite that section in place

The GPU section is the newest `gpu_check-*.jsonl` of the folder (benchmarks/gpu_check.py), or
"not measured yet" while there is none; it sits between GPU_BEGIN and GPU_END in the markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_DIR = ROOT / "reports" / "perf_gpu"
GPU_BEGIN = "<!-- gpu-check:begin (written by benchmarks/summarise.py from reports/perf_gpu; do not edit) -->"
GPU_END = "<!-- gpu-check:end -->"


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


def read_rows(paths: list[str] | list[Path]) -> list[dict]:
    return [json.loads(line) for p in paths for line in open(p) if line.strip()]


def main(paths: list[str]) -> None:
    rows = read_rows(paths)
    for kind, table in (("condense", condense_table), ("evaluate", evaluate_table), ("memory", memory_table)):
        chosen = [r for r in rows if r.get("bench") == kind and r.get("check") != "gpu_check"]
        if chosen:
            print(f"\n### {kind} ({chosen[0].get('device', '?')})\n")
            print("\n".join(table(chosen)))


# ---------------------------------------------------------------------------------------------
# The GPU section of reports/performance.md, from benchmarks/gpu_check.py's JSON lines
# ---------------------------------------------------------------------------------------------
def gpu_check_files(folder: Path) -> list[Path]:
    """The check's files, oldest first (their names carry the UTC start time)."""
    return sorted(Path(folder).glob("gpu_check-*.jsonl"))


def _current_defaults() -> str:
    try:
        sys.path.insert(0, str(ROOT)) if str(ROOT) not in sys.path else None
        from dcclib import measured

        parts = []
        for key, provisional in (("classwise_mode", "vmap"), ("parallel_nets_budget_bytes", 24 * 2**30)):
            value = measured.measured_default("cuda", key, provisional)
            shown = f"{value / 2**30:g} GiB" if isinstance(value, int) else value
            parts.append(f"`{key}` = {shown} ({measured.provenance('cuda', key)})")
        return "Current CUDA defaults (`dcclib/measured_defaults.json`): " + "; ".join(parts) + "."
    except Exception as exc:  # the section must render whatever happens
        return f"(current CUDA defaults not readable: {exc})"


def _tf(v) -> str:
    return fmt(v / 1e12 if isinstance(v, int | float) else None)


def gpu_section(folder: Path = GPU_DIR) -> list[str]:
    """Markdown of the newest gpu_check run in `folder` ("not measured yet" when there is none)."""
    files = gpu_check_files(folder)
    out = ["## GPU figures (`make gpu-check`)", ""]
    if not files:
        out += [
            "**Not measured yet.** No `reports/perf_gpu/gpu_check-*.jsonl` exists: run `make gpu-check` on "
            'a GPU machine (see "One-command GPU check" above). Until then every GPU figure in this '
            "report is unmeasured and the CUDA defaults below are provisional.",
            "",
            _current_defaults(),
        ]
        return out
    path = files[-1]
    rows = [r for r in read_rows([path]) if r.get("check") == "gpu_check"]
    env = next((r for r in rows if r["section"] == "env" and r["kind"] == "result"), {})
    end = next((r for r in rows if r["section"] == "run" and r["kind"] == "end"), None)
    data = {r["dataset"]: r["data"] for r in rows if r["section"] == "data" and r["kind"] == "result"}
    rel = os.path.relpath(path, ROOT / "reports") if path.is_absolute() else path
    dirty = " (uncommitted changes)" if env.get("git_dirty") else ""
    out += [
        f"Newest run: [`{path.name}`]({rel}) on **{env.get('device', '?')}**, {env.get('date', '?')}; "
        f"torch {env.get('torch', '?')}, CUDA {env.get('cuda', '-')}, cuDNN {env.get('cudnn', '-')}; commit "
        f"`{str(env.get('git_commit') or '-')[:12]}`{dirty}; "
        f"data: " + ", ".join(f"{k} {v}" for k, v in data.items()) + "; "
        f"{fmt(end['seconds']) + ' s' if end else 'did not finish (no end row)'} of a "
        f"{fmt(env.get('budget_s'))} s budget. All paths strict fp32 unless the row says otherwise.",
        "",
    ]
    if env.get("tiny"):
        out += ["**Tiny shapes (`--tiny`): a smoke run of the check, not GPU figures.**", ""]
    out += ["| section | status | seconds | cap s | problems / error |", "|---|---|---|---|---|"]
    for r in rows:
        if r["kind"] == "section":
            note = r.get("error") or r.get("reason") or "; ".join(r.get("problems") or [])
            out.append(
                f"| {r['section']} | {r['status']} | {fmt(r.get('seconds'))} | {fmt(r.get('cap_s'))} "
                f"| {note[:200]} |"
            )
    res = lambda sec: [r for r in rows if r["section"] == sec and r["kind"] == "result"]  # noqa: E731
    match = res("correctness_matching")
    if match:
        out += [
            "",
            "Correctness, matching (relative error against CPU float64):",
            "",
            "| method | mode | loss err device | loss err CPU fp32 | grad err device | grad err CPU fp32 "
            "| pass |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in match:
            out.append(
                f"| {r['method']} | {r['mode']} | {fmt(r['loss_rel_err_device'], 2)} "
                f"| {fmt(r['loss_rel_err_cpu32'], 2)} | {fmt(r['grad_rel_err_device'], 2)} "
                f"| {fmt(r['grad_rel_err_cpu32'], 2)} | {r['passed']} |"
            )
    outer = res("correctness_outer") + res("correctness_evaluate")
    if outer:
        out += [
            "",
            "Correctness, outer iteration and evaluation:",
            "",
            "| check | method / model | mode / impl | difference | pass |",
            "|---|---|---|---|---|",
        ]
        for r in outer:
            diff = r.get("rel_diff_of_update", r.get("max_abs_diff"))
            out.append(
                f"| {r['what']} | {r.get('method', r.get('model'))} | {r.get('mode', r.get('impl'))} "
                f"| {fmt(diff, 2)} | {r['passed']} |"
            )
    cond = [r for r in rows if r.get("bench") == "condense" and r["kind"] == "result" and "K_i" in r]
    if cond:
        out += [
            "",
            "Condensation, seconds per outer iteration (outer index 300: DCC/DSAC contrastive):",
            "",
            "| dataset | method | ipc | K_i | T | mode | s / outer | estimated | literal / this "
            "| max diff vs literal | TFLOP / outer | TFLOP/s | peak GB | K_o = 1000 run, h |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in cond:
            run_h = r.get("paper_run_seconds_extrapolated")
            out.append(
                f"| {r['dataset']} | {r['method']} | {r['ipc']} | {r['K_i']} | {r['T']} | {r['mode']} "
                f"| {fmt(r['seconds_per_outer'])} | {fmt(r['seconds_per_outer_estimated'])} "
                f"| {fmt(r['ratio_literal_over_this'])} | {fmt(r['max_abs_diff_vs_literal'], 2)} "
                f"| {_tf(r['flops_per_outer'])} | {fmt(r['achieved_tflops'])} | {fmt(r['peak_gpu_gb'])} "
                f"| {fmt(run_h / 3600 if run_h else None)} |"
            )
    ev = [r for r in res("evaluate") if r.get("bench") == "evaluate"]
    if ev:
        out += [
            "",
            "Evaluation, 20 networks (DSA protocol, E = 1000 extrapolated from two timed E):",
            "",
            "| ipc | mode | E timed | s (largest E) | protocol s (E = 1000) | vs sequential | vs literal "
            "| acc mean +- std | TFLOP/s | peak GB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ev:
            out.append(
                f"| {r['ipc']} | {r['mode']} | {r['epochs_timed']} | {fmt(r['seconds'])} "
                f"| {fmt(r['protocol_seconds_extrapolated'])} | {fmt(r['ratio_vs_sequential'])} "
                f"| {fmt(r['ratio_vs_literal'])} | {r['acc_mean']:.3f} +- {r['acc_std']:.3f} "
                f"| {fmt(r['achieved_tflops'])} | {fmt(r['peak_gpu_gb'])} |"
            )
    mem = [r for r in rows if r["section"] == "memory_cifar100_ipc50" and r["kind"] in ("result", "error")]
    if mem:
        out += [
            "",
            "CIFAR-100 ipc 50 memory:",
            "",
            "| what | method | K_i | T | real images | chunk | s | peak GPU GB | note |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in mem:
            note = r.get("error") or (
                f"paper outer iteration est. {fmt(r['paper_outer_seconds_estimated'])} s"
                if r.get("paper_outer_seconds_estimated")
                else ""
            )
            out.append(
                f"| {r.get('what', 'error')} | {r.get('method', '-')} | {r.get('K_i', '-')} "
                f"| {r.get('T', '-')} | {r.get('real_images', '-')} | {r.get('real_chunk_setting', '-')} -> "
                f"{fmt(r.get('real_chunk'))} | {fmt(r.get('seconds'))} | {fmt(r.get('peak_gpu_gb'))} "
                f"| {str(note)[:160]} |"
            )
    prec = res("precision")
    if prec:
        out += [
            "",
            "Opt-in precisions (same process, against fp32):",
            "",
            "| what | mode | s | fp32 / this | note |",
            "|---|---|---|---|---|",
        ]
        for r in prec:
            sec = r.get("seconds_per_outer", r.get("seconds"))
            note = (
                f"max abs diff vs fp32 {fmt(r.get('max_abs_diff_vs_fp32'), 2)}"
                if r["bench"] == "condense"
                else f"acc {r['acc_mean']:.3f} (fp32 {fmt(r.get('acc_mean_fp32'))})"
            )
            out.append(
                f"| {r['bench']} | {r['mode']} | {fmt(sec)} | {fmt(r.get('ratio_fp32_over_this'))} | {note} |"
            )
    decision = next((r for r in reversed(rows) if r["kind"] == "decision"), None)
    if decision:
        out += [
            "",
            f"Decisions ({'final' if decision['final'] else 'the last made before the run ended'}; "
            f"written to {decision.get('written_to') or 'no file'}):",
            "",
        ]
        for key, d in decision["decisions"].items():
            value = d.get("value")
            shown = f"{value / 2**30:g} GiB" if key.endswith("bytes") and isinstance(value, int) else value
            extra = ""
            if "geomean_vmap_over_loop" in d:
                extra = f"; vmap/loop geometric mean {fmt(d['geomean_vmap_over_loop'])} ({d.get('basis')})"
            if "group" in d:
                extra = f"; group {d['group']}, protocol seconds by group {d['protocol_seconds_by_group']}"
            out.append(f"- `{key}` = **{shown}** ({d.get('status')}{extra}). Rule: {d.get('rule', '-')}.")
    target = next((r for r in rows if r["section"] == "targets" and r["kind"] == "summary"), None)
    if target:
        run_s = target.get("dsac_ipc10_paper_run_seconds")
        speed = ", ".join(
            f"{k} {fmt(v)}x" for k, v in (target.get("condense_speedup_vs_literal_at_main_ipc") or {}).items()
        )
        out += [
            "",
            "Targets:",
            "",
            f"- condensation fast / literal at ipc 10 (target >= 10x): {speed or '-'}",
            f"- evaluation, 20 networks batched / literal (target >= 10x): "
            f"{fmt(target.get('evaluate_speedup_vs_literal'))}x; / one at a time: "
            f"{fmt(target.get('evaluate_speedup_vs_sequential'))}x",
            f"- a paper-settings CIFAR-10 ipc-10 DSAC run (target < 30 min): "
            f"{fmt(run_s / 60 if run_s else None)} min (1000 outer iterations + the protocol's evaluation)",
            f"- CIFAR-100 ipc 50 peak with chunking (target <= 80 GB): "
            f"{fmt(target.get('cifar100_ipc50_peak_gpu_gb'))} GB",
            f"- achieved TFLOP/s for the cost model: condensation "
            f"{fmt(target.get('condense_achieved_tflops_median'))}, "
            f"evaluation {fmt(target.get('evaluate_achieved_tflops_median'))} (medians)",
        ]
    errors = [r for r in rows if r["kind"] == "error"]
    if errors:
        out += ["", "Errors recorded (the check went on):", ""]
        for r in errors:
            where = ", ".join(
                f"{k}={r[k]}" for k in ("method", "ipc", "mode", "what") if r.get(k) is not None
            )
            out.append(f"- {r['section']}{' (' + where + ')' if where else ''}: `{r['error']}`")
    if len(files) > 1:
        out += ["", "Older runs: " + ", ".join(f"`{f.name}`" for f in files[:-1])]
    out += ["", _current_defaults()]
    return out


def update_performance_md(md: Path, folder: Path = GPU_DIR) -> None:
    """Rewrite the GPU section of `md` (between GPU_BEGIN and GPU_END; appended when absent)."""
    md = Path(md)
    text = md.read_text()
    block = "\n".join([GPU_BEGIN, *gpu_section(folder), GPU_END])
    if GPU_BEGIN in text and GPU_END in text:
        head, rest = text.split(GPU_BEGIN, 1)
        text = head + block + rest.split(GPU_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = md.with_name(f".{md.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, md)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="*", help="benchmark JSON lines: print their tables")
    parser.add_argument("--gpu", nargs="?", const=str(GPU_DIR), help="print the GPU section of this folder")
    parser.add_argument("--update-md", type=Path, help="rewrite the GPU section of this markdown file")
    parser.add_argument("--gpu-dir", type=Path, default=GPU_DIR, help="the check's folder (with --update-md)")
    args = parser.parse_args()
    if args.files:
        main(args.files)
    if args.gpu:
        print("\n".join(gpu_section(Path(args.gpu))))
    if args.update_md:
        update_performance_md(args.update_md, args.gpu_dir)
