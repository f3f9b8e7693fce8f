"""The sections in order of priority, and running them: each in try/except (an error is recorded
with its traceback and the next section runs), each within its planned seconds and what is left of
the global budget (what no longer fits is skipped, and recorded as such)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .condense import sec_condense
from .correctness import sec_correctness_evaluate, sec_correctness_matching, sec_correctness_outer
from .data import sec_data
from .decisions import sec_decisions
from .env import sec_env
from .evaluation import sec_evaluate
from .memory import sec_memory
from .plan import MIN_START_S
from .precision import sec_precision
from .record import Ctx, free_memory, one_line
from .targets import sec_targets


@dataclass(frozen=True)
class Section:
    name: str
    fn: Callable[[Ctx, str], None]
    always: bool = False  # runs even past the budget (instant: no device work)


SECTIONS = (
    Section("env", sec_env, always=True),
    Section("data", sec_data, always=True),
    Section("correctness_matching", sec_correctness_matching),
    Section("correctness_outer", sec_correctness_outer),
    Section("correctness_evaluate", sec_correctness_evaluate),
    Section("condense_main", sec_condense),
    Section("evaluate", sec_evaluate),
    Section("condense_ipc1", sec_condense),
    Section("memory_cifar100_ipc50", sec_memory),
    Section("condense_ipc50", sec_condense),
    Section("condense_cifar100_ipc10", sec_condense),
    Section("precision", sec_precision),
    Section("decisions", sec_decisions, always=True),
    Section("targets", sec_targets, always=True),
)
SECTION_NAMES = tuple(s.name for s in SECTIONS)


def run_sections(ctx: Ctx, only: set[str] | None) -> list[dict]:
    statuses = []
    for sec in SECTIONS:
        if only is not None and sec.name not in only and not sec.always:
            statuses.append(
                ctx.rec.write(sec.name, "section", status="skipped", reason="not asked for (--sections)")
            )
            continue
        budget_left = ctx.args.budget - (time.monotonic() - ctx.rec.t0)
        cap = ctx.plan.caps.get(sec.name, 30.0)
        if not sec.always and budget_left < MIN_START_S:
            statuses.append(
                ctx.rec.write(
                    sec.name,
                    "section",
                    status="skipped",
                    cap_s=cap,
                    reason=f"time budget: {max(budget_left, 0):.1f} s of {ctx.args.budget:.0f} s left",
                )
            )
            continue
        ctx.deadline = time.monotonic() + (max(min(cap, budget_left), 0.0) if not sec.always else 600.0)
        ctx.problems = []
        tic = time.monotonic()
        status, err = "ok", None
        try:
            sec.fn(ctx, sec.name)
        except Exception as exc:
            status, err = "error", exc
            ctx.error(sec.name, exc)
        free_memory(ctx.device)
        if status == "ok" and ctx.problems:
            status = "partial"
        statuses.append(
            ctx.rec.write(
                sec.name,
                "section",
                status=status,
                seconds=time.monotonic() - tic,
                cap_s=cap,
                error=one_line(err) if err else None,
                problems=ctx.problems[:20],
            )
        )
    return statuses
