"""The layout is the architecture: each layer imports only the layers below it, the public
surface resolves, and the installed package is the job alone."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import enrolment_reconciliation
from devkit.paths import PROJECT_ROOT

PACKAGE = Path(enrolment_reconciliation.__file__).parent
NAME = "enrolment_reconciliation"
# what each layer may import of the package (its own layer always)
MAY_IMPORT = {
    "core": {"core", "runtime.jvm"},
    "runtime": {"runtime"},
    "io": {"core", "runtime", "io"},
    "batch": {"core", "runtime", "io", "batch"},
    "modes": {"core", "runtime", "io", "batch", "modes"},
    "cli": {"core", "runtime", "io", "batch", "modes"},
    "__main__": {"cli"},
}


def _imports(path: Path) -> set[str]:
    """The package's modules a file imports, relative to the package (``io.cassandra``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {n.removeprefix(f"{NAME}.") for n in names if n.startswith(f"{NAME}.")}
    return found


def _layer(path: Path) -> str:
    """``core`` for ``core/progress.py``; ``cli`` for ``cli.py``."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(path)
        if layer == "__init__":
            continue  # the package's surface: lazy imports of every layer
        allowed = MAY_IMPORT[layer]
        for module in _imports(path):
            if not any(module == a or module.startswith(f"{a}.") for a in allowed):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert wrong == []


def test_every_name_of_the_public_surface_resolves():
    assert sorted(enrolment_reconciliation.__all__) == sorted(enrolment_reconciliation._SURFACE)
    for name in enrolment_reconciliation.__all__:
        assert getattr(enrolment_reconciliation, name) is not None, name


def test_the_wheel_holds_the_job_alone(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(PROJECT_ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("enrolment_reconciliation-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = sorted(n for n in names if n.endswith(".py"))
    assert modules and all(n.startswith(f"{NAME}/") for n in modules), modules
    shipped = "\n".join(modules)
    for kept_out in ("devkit", "sample", "loader", "stack", "tests/", "benchmarks"):
        assert kept_out not in shipped, kept_out
    # no test hook in the job: a milestone is announced, nothing in the package kills
    for module in modules:
        text = zipfile.ZipFile(wheel).read(module).decode()
        assert "os.kill" not in text and "SIGKILL" not in text, module
