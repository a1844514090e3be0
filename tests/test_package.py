"""Rules the whole package keeps: short functions (a reader sees one idea at a time)."""

from __future__ import annotations

import ast

from devkit.paths import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "lib" / "enrolment_reconciliation"
MAX_FUNCTION_LINES = 60


def test_every_function_fits_on_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1 if node.end_lineno else 0
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines})")
    assert long == []
