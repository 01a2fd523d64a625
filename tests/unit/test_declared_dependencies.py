"""Every third-party module the package imports is a declared dependency (or in a runtime extra).

A clean `pip install .` gets only what pyproject.toml declares: a module that merely happens to be
installed here (pulled in by a test tool, or by an older version of a dependency) would crash the CLI
for a user. The test extra does not count: aiodicom never imports pynetdicom or pytest at run time.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_top_level_modules() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "aiodicom").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.partition(".")[0], str(path.relative_to(ROOT)))
    return found


def _distribution_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_third_party_import_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    declared = {_distribution_name(r) for r in project["dependencies"]}
    declared |= {_distribution_name(r) for name, reqs in extras.items() if name != "test" for r in reqs}
    providers = importlib.metadata.packages_distributions()
    undeclared = []
    for module, where in _imported_top_level_modules().items():
        if module in sys.stdlib_module_names or module in ("aiodicom", "__future__"):
            continue
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
        if not dists & declared:
            undeclared.append(f"{module} (first imported by {where}; provided by {sorted(dists)})")
    assert not undeclared, "imported but not declared in pyproject.toml: " + "; ".join(undeclared)
