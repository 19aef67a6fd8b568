"""Imports point downwards: flows -> augment / evaluation; evaluation -> augment; augment/core knows
no modality; nothing at run time imports the testing helpers; no module imports itself back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("augment", "evaluation", "flows")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {name: {m for m in imports(path) if m in files and m != name}
            for name, path in files.items()}


def offenders(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{name} -> {m}" for name, deps in graph().items() if name.startswith(prefix)
                  for m in deps if m.startswith(forbidden))


def test_library_packages_do_not_import_prefect_or_flows():
    bad = [str(p.relative_to(ROOT)) for pkg in ("augment", "evaluation")
           for p in (ROOT / pkg).rglob("*.py")
           if {m.split(".")[0] for m in imports(p)} & {"prefect", "flows", "prefect_dask",
                                                       "prefect_ray"}]
    assert bad == []


def test_generation_does_not_depend_on_evaluation():
    assert offenders("augment", ("evaluation",)) == []


def test_the_core_knows_no_modality_and_nothing_runs_the_testing_helpers():
    assert offenders("augment.core", ("augment.image",)) == []
    runtime = [f"{name} -> {m}" for name, deps in graph().items()
               if not name.startswith("augment.testing") for m in deps
               if m.startswith("augment.testing")]
    assert runtime == []


def test_no_import_cycles():
    deps = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(deps[name]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[name] = 2

    for name in sorted(deps):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_importing_the_library_does_not_load_prefect():
    code = ("import sys, augment.core.shards, augment.image.generation, augment.image.dataset, "
            "evaluation.evaluate; print('prefect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
