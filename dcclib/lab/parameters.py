"""A notebook's parameters: their names, types and ranges, checked in one place.

Each notebook declares its parameters in the cell tagged "parameters", one annotated line each::

    ipcs: "Optional[list[int]]" = None  # None: the paper's 1, 10, 50
    image_size: "Literal[8, 16, 32, 64]" = 32

The annotation is the declaration (a small grammar: str, int, float, bool, dict, list[X],
dict[str, X], Optional[X], Union[X, Y], X | Y, Literal[...]; papermill's --help-notebook reads
every form but X | Y); ranges that follow from a parameter's meaning
are here, by name (``MINIMUM``, ``choices``). The same `check` runs twice:

- by the notebook itself, in the cell after its parameters (``check_notebook_parameters(globals())``),
  so that a plain ``papermill -p ...`` run is checked too: an unknown name (one that papermill
  injected but the notebook does not declare), a wrong type or a value out of range stops the
  notebook with one line;
- by the project's runner (``python -m dcclib.lab.reports --param``, ``dcc sweep --param``) before
  anything runs or any folder is made.

What papermill's ``-p`` passes as text is read as the declaration asks: a list parameter takes
JSON (``'["automobile"]'``), comma-separated words (``automobile,truck``) or one value
(``-p ipcs 10`` is ``[10]``); a dict parameter takes JSON.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcclib.errors import UserError

# The smallest value of each numeric parameter that may be 0 (every other number must be > 0).
MINIMUM = {
    "seed": 0,
    "run_index": 0,
    "simple_lengths": 0,
    "beta": 0,
    "betas": 0,
    "lam": 0,
    "kip_reg": 0,
    "score_epoch": 0,
}
_DEVICE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")
# Names IPython defines in every kernel (never a parameter, never reported as unknown).
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_INJECTED_HEADER = "# Parameters"  # papermill's injected cell starts with this line


@dataclass(frozen=True)
class Parameter:
    """One declared parameter: its name and its annotation (the text after the colon)."""

    name: str
    annotation: str


# ----------------------------------------------------------------------------- declarations
def declared_in(source: str, where: str = "the parameters cell") -> dict[str, Parameter]:
    """The parameters that the cell `source` declares (annotated assignments, in order).

    A plain assignment (no annotation) is a parameter of type "any"; a syntax error is a
    UserError."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise UserError(f"{where} is not valid Python ({exc.msg})") from None
    out: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            ann = node.annotation
            text = (
                ann.value
                if isinstance(ann, ast.Constant) and isinstance(ann.value, str)
                else ast.unparse(ann)
            )
            out.setdefault(node.target.id, Parameter(node.target.id, text))
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out.setdefault(t.id, Parameter(t.id, "any"))
    return out


def notebook_declared(notebook: Path) -> dict[str, Parameter]:
    """The parameters of `notebook` (its cell tagged "parameters"; none without one)."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read notebook {notebook} ({exc})") from None
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        return {}
    source = tagged[0]["source"]
    return declared_in(
        source if isinstance(source, str) else "".join(source), f"the parameters cell of {notebook}"
    )


# ---------------------------------------------------------------------------------- checking
def check(
    given: dict[str, Any], declared: dict[str, Parameter], where: str = "this notebook"
) -> dict[str, Any]:
    """`given` as the declarations read it (see the module's docstring); a UserError in one line
    for an unknown name, a wrong type or a value out of range."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise UserError(
            f"{where} has no parameter {', '.join(map(repr, unknown))}; its parameters are "
            f"{', '.join(declared) or 'none'}"
        )
    return {name: _value(declared[name], value, where) for name, value in given.items()}


def check_notebook_parameters(namespace: dict[str, Any]) -> None:
    """The notebook's own check, run in the cell after its parameters: every declared parameter
    (``namespace["__annotations__"]``) has a value of its type and range, and papermill injected
    no name the notebook does not declare. Values given as text are replaced by what they read as."""
    annotations = namespace.get("__annotations__", {})
    declared = {
        name: Parameter(name, ann if isinstance(ann, str) else _type_text(ann))
        for name, ann in annotations.items()
    }
    injected = _injected_names(namespace.get("In", []))
    given = {name: namespace[name] for name in declared if name in namespace}
    given.update({name: namespace.get(name) for name in injected if name not in declared})
    namespace.update(check(given, declared, "this notebook"))


def _injected_names(history: list[str]) -> list[str]:
    """The names papermill's injected cell (the latest one in the kernel's input history) assigns."""
    for source in reversed(history):
        if isinstance(source, str) and source.lstrip().startswith(_INJECTED_HEADER):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return []
            return [
                t.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for t in node.targets
                if isinstance(t, ast.Name)
            ]
    return []


def _type_text(annotation: Any) -> str:
    """An annotation object (``int``, ``list[float]``) as the text it was written as."""
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def list_parameter(name: str, value: Any) -> list:
    """`value` read as a list, as the module's docstring says (JSON text, comma-separated words,
    one value); a UserError in one line otherwise."""
    try:
        return _as_list(value)
    except _Mismatch as exc:
        raise UserError(f"parameter {name} wants a list{exc.detail}, got {value!r}") from None


# ------------------------------------------------------------------------------ one value
def _value(param: Parameter, value: Any, where: str) -> Any:
    if param.annotation == "any":
        return value
    try:
        spec = ast.parse(param.annotation, mode="eval").body
        if isinstance(spec, ast.Constant) and isinstance(spec.value, str):  # quoted twice (PEP 563)
            spec = ast.parse(spec.value, mode="eval").body
    except SyntaxError:
        raise UserError(
            f"{where}: parameter {param.name} has an unreadable type '{param.annotation}'"
        ) from None
    try:
        return _conform(spec, value, param.name)
    except _Mismatch as exc:
        wanted = exc.detail if exc.whole else f"{param.annotation}{exc.detail}"
        raise UserError(f"{where}: parameter {param.name} wants {wanted}, got {value!r}") from None


class _Mismatch(Exception):
    """A value that does not fit; `detail` adds to the annotation in the message (or, `whole`,
    replaces it: "one of 8, 16, 32, 64")."""

    def __init__(self, detail: str = "", whole: bool = False) -> None:
        super().__init__(detail)
        self.detail, self.whole = detail, whole


def _conform(spec: ast.expr, value: Any, name: str) -> Any:
    """`value` as `spec` (an annotation's syntax tree) reads it; _Mismatch when it does not fit."""
    if isinstance(spec, ast.BinOp) and isinstance(spec.op, ast.BitOr):  # X | Y
        return _first_fit([spec.left, spec.right], value, name)
    if isinstance(spec, ast.Constant) and spec.value is None:
        if value is None:
            return None
        raise _Mismatch()
    if isinstance(spec, ast.Subscript):
        head = ast.unparse(spec.value)
        args = spec.slice.elts if isinstance(spec.slice, ast.Tuple) else [spec.slice]
        if head == "Union":
            return _first_fit(args, value, name)
        if head == "Optional":
            return None if value is None else _conform(args[0], value, name)
        if head == "Literal":
            allowed = [ast.literal_eval(a) for a in args]
            if value in allowed and type(value) in {type(a) for a in allowed}:
                return value
            raise _Mismatch(f"one of {', '.join(map(repr, allowed))}", whole=True)
        if head == "list":
            items = _as_list(value)
            return [_conform(args[0], v, name) for v in items]
        if head == "dict":
            mapping = _as_dict(value)
            return {_conform(args[0], k, name): _conform(args[1], v, name) for k, v in mapping.items()}
        raise _Mismatch()
    if isinstance(spec, ast.Name):
        return _scalar(spec.id, value, name)
    raise _Mismatch()


def _first_fit(options: list[ast.expr], value: Any, name: str) -> Any:
    """The first option `value` fits; JSON text ('{...}', '[...]') tries the non-text options first."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        options = sorted(options, key=lambda o: ast.unparse(o) == "str")
    for option in options:
        try:
            return _conform(option, value, name)
        except _Mismatch:
            continue
    raise _Mismatch()


def _scalar(kind: str, value: Any, name: str) -> Any:
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise _Mismatch()
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch()
        if kind == "int" and not float(value).is_integer():
            raise _Mismatch()
        number = int(value) if kind == "int" else float(value)
        least = MINIMUM.get(name)
        if not math.isfinite(number) or (number < least if least is not None else number <= 0):
            raise _Mismatch(f" (at least {least})" if least is not None else " (above 0)")
        return number
    if kind == "str":
        if not isinstance(value, str):
            raise _Mismatch()
        return _choice(name, value)
    if kind == "dict":
        return _as_dict(value)
    if kind == "list":
        return _as_list(value)
    raise _Mismatch()


def _choice(name: str, value: str) -> str:
    """The parameters whose text names one of a fixed set: the profile and the device."""
    if name == "profile":
        from dcclib.lab.profiles import PROFILES

        if value not in PROFILES:
            raise _Mismatch(f"one of {', '.join(PROFILES)}", whole=True)
    if name == "device" and not _DEVICE.match(value):
        raise _Mismatch("cpu, cuda, cuda:N, auto or None", whole=True)
    return value


def _as_list(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            parsed = _json(text)
            if isinstance(parsed, list):
                return parsed
            raise _Mismatch(" (a JSON list)")
        return [_json(part.strip(), keep=True) for part in text.split(",") if part.strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    raise _Mismatch()


def _as_dict(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and isinstance(parsed := _json(value), dict):
        return parsed
    raise _Mismatch(" (a JSON object)")


def _json(text: str, keep: bool = False) -> Any:
    """`text` read as JSON; with `keep`, text that is not JSON stays text (a bare word)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if keep:
            return text
        raise _Mismatch() from None
