"""No import cycles among train_lib's modules: at module level, type-only imports
(under `if TYPE_CHECKING`) included, since a circle of them is a circle of
concepts; imports inside functions do not count. `from pkg import name` depends
on `pkg.name` when that is a module, else on `pkg`; importing `a.b.c` first runs
`a` and `a.b`."""

from __future__ import annotations

import ast
import os

from tests.conftest import REPO


def _modules() -> dict[str, str]:
    found = {}
    for root, _, files in os.walk(os.path.join(REPO, "train_lib")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def _imports(body: list[ast.stmt], modules: dict[str, str]) -> set[str]:
    out: set[str] = set()
    for node in body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("train_lib"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("train_lib"))
        elif isinstance(node, ast.If):
            out |= _imports(node.body + node.orelse, modules)
        elif isinstance(node, ast.Try | ast.TryStar):
            handlers = [stmt for handler in node.handlers for stmt in handler.body]
            out |= _imports(node.body + handlers + node.orelse + node.finalbody, modules)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            direct = _imports(ast.parse(f.read()).body, modules)
        parents = {".".join(d.split(".")[:i]) for d in direct for i in range(1, d.count(".") + 1)}
        graph[name] = {d for d in direct | parents
                       if d in modules and d != name and not name.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        stack.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return cycles


def test_train_lib_has_no_import_cycle():
    graph = _graph()
    assert len(graph) > 30 and "train_lib.training.trainer" in graph
    assert "train_lib.training.loop" in graph["train_lib.training.trainer"]
    assert _cycles(graph) == []


def test_type_only_imports_count():
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from train_lib.report.records import Report\n")
    modules = {"train_lib.report.records": "records.py"}
    assert _imports(ast.parse(source).body, modules) == {"train_lib.report.records"}


def test_imports_in_every_branch_of_a_try_count():
    source = ("try:\n    import train_lib.a\nexcept ImportError:\n    import train_lib.b\n"
              "else:\n    import train_lib.c\nfinally:\n    import train_lib.d\n")
    assert _imports(ast.parse(source).body, {}) == {f"train_lib.{m}" for m in "abcd"}


def test_the_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
