"""No code outside damoxing/tasks/ compares with, or dispatches on, a registered task name.

A task owns its whole chain; everything else asks the task object (its head, metric, linear probe,
records, batches, rows). Adding a task is one new file, never a new branch elsewhere.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from damoxing.tasks import TASKS, Task, register

PACKAGE = Path(__file__).resolve().parents[2] / "damoxing"
NAMES = set(TASKS.names())


def _names_in(node) -> list[str]:
    """Task-name string constants in an expression (also inside tuples, lists and sets)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES:
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [n for e in node.elts for n in _names_in(e)]
    return []


def task_name_branches(source: str) -> list[tuple[int, str]]:
    """(line, name) of every comparison with, or dispatch on, a registered task name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            found += [(node.lineno, n) for part in (node.left, *node.comparators) for n in _names_in(part)]
        elif isinstance(node, ast.Dict):  # {"classification": ..., "regression": ...}[task]
            found += [(node.lineno, n) for key in node.keys if key is not None for n in _names_in(key)]
        elif isinstance(node, ast.match_case):
            found += [
                (node.pattern.lineno, n)
                for sub in ast.walk(node.pattern)
                if isinstance(sub, ast.MatchValue)
                for n in _names_in(sub.value)
            ]
    return found


def outside_tasks() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "tasks" not in p.relative_to(PACKAGE).parts[:1]]


def test_no_branch_on_a_task_name_outside_tasks():
    offenders = [
        f"{p.relative_to(PACKAGE.parent)}:{line}: {name!r}"
        for p in outside_tasks()
        for line, name in task_name_branches(p.read_text(encoding="utf-8"))
    ]
    assert not offenders, "branches on task names outside damoxing/tasks/:\n" + "\n".join(offenders)


def test_no_task_comparison_pattern_outside_tasks():
    pattern = re.compile(r"task (==|!=|in \()")
    offenders = [
        f"{p}:{i}"
        for p in outside_tasks()
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders


@pytest.mark.parametrize(
    "source",
    [
        'if task == "regression": pass',
        'x = meta["task"] in ("classification", "pair")',
        'loss = {"clm": a, "masked_lm": b}[name]',
        'match t:\n    case "token_classification": pass',
    ],
)
def test_the_checker_finds_branches(source):
    assert task_name_branches(source)


def test_registering_a_name_twice_is_an_error():
    class Again(Task):
        name = "classification"

    with pytest.raises(ValueError, match="registered twice"):
        register(Again())
