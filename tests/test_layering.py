"""augment/ and evaluation/ never import prefect: only flows/ does."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_library_packages_do_not_import_prefect_or_flows():
    offenders = [str(p.relative_to(ROOT)) for pkg in ("augment", "evaluation")
                 for p in (ROOT / pkg).rglob("*.py")
                 if imported_modules(p) & {"prefect", "flows", "prefect_dask", "prefect_ray"}]
    assert offenders == []


def test_importing_the_library_does_not_load_prefect():
    code = ("import sys, augment.image.generate, augment.image.dataset, evaluation; "
            "print('prefect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
