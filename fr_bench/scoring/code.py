"""From a model's raw answer to the program the sandbox runs (HumanEval and MBPP conventions)."""
from __future__ import annotations

import ast
import re
import warnings
from typing import TYPE_CHECKING, Any, Sequence

from .sandbox import Program, SandboxConfig, run_programs

if TYPE_CHECKING:
    from ..types import SampleResult

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}


def extract_code(text: str) -> str:
    """The first ```python block (an unclosed one runs to the end), else the first ``` block, else the raw text."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]
    for tag, body in blocks:
        if tag in _PYTHON_TAGS:
            return body
    if blocks:
        return blocks[0][1]
    return text


def _parse(code: str) -> ast.Module:
    """ast.parse without the Deprecation/SyntaxWarnings that model (and MBPP reference) code often triggers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(code)


def _defines(code: str, name: str) -> bool:
    try:
        tree = _parse(code)
    except SyntaxError:
        return re.search(rf"^\s*(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in ast.walk(tree))


def _as_body(code: str) -> str:
    """A body written flush-left (common in chat answers) gets the function's 4-space indent."""
    lines = code.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if first and not first[0].isspace():
        return "\n".join(("    " + ln) if ln.strip() else ln for ln in lines) + "\n"
    return code if code.endswith("\n") else code + "\n"


def humaneval_program(row: dict[str, Any], output: str) -> tuple[Program, str]:
    """(program, extracted code). A full `def entry_point` is appended after the prompt (so the prompt's imports and
    helper functions stay available and the answer's definition wins); a bare body completes the prompt."""
    code = extract_code(output)
    if _defines(code, row["entry_point"]):
        source = row["prompt"] + "\n" + code
    else:
        source = row["prompt"] + _as_body(code)
    test = row["test"] + f"\n\ncheck({row['entry_point']})\n"
    return Program(source, test, keep=(row["entry_point"],)), code


def mbpp_program(row: dict[str, Any], output: str) -> tuple[Program, str]:
    """(program, extracted code): test_imports + code, then test_imports + the asserts."""
    code = extract_code(output)
    code = re.sub(r"^\s*\[BEGIN\]\s*\n?", "", code).split("[DONE]")[0]
    imports = "\n".join(row.get("test_imports") or [])
    source = (imports + "\n" if imports else "") + code
    test = (imports + "\n" if imports else "") + "\n".join(row["test_list"]) + "\n"
    return Program(source, test, keep=_top_level_names(row.get("code", ""))), code


def _top_level_names(reference: str) -> tuple[str, ...]:
    """Functions and classes the reference solution defines: the names MBPP's asserts call."""
    try:
        tree = _parse(reference)
    except SyntaxError:
        return tuple(re.findall(r"^(?:def|class)\s+(\w+)", reference, re.MULTILINE))
    return tuple(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))


def score_programs(ids: Sequence[str], programs: Sequence[Program], extracted: Sequence[str],
                   config: SandboxConfig | None = None) -> list["SampleResult"]:
    """Run every program in the sandbox (in parallel) and turn the verdicts into per-sample results."""
    from ..types import SampleResult

    runs = run_programs(programs, config)
    return [SampleResult(id=i, extracted=code, gold=None, correct=r.passed, metrics={"pass@1": float(r.passed)},
                         details={"status": r.status, "exit_code": r.exit_code, "signal": r.signal,
                                  "output": r.output[-2000:], "duration_s": r.duration_s})
            for i, code, r in zip(ids, extracted, runs, strict=True)]
