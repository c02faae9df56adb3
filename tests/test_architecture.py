"""The package's dependency rule, checked on the source: ops -> layers -> models, with data / labeler / metrics beside
the models (neither side imports the other), then hub, training, commands, and the CLI last. Nothing imports a layer
above its own, and nothing outside a model's folder imports that model's modules other than through the folder's
public ``__init__``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "modeling_rrg_mamba"

# Rank of each top-level part: a module may import parts of a lower or equal rank only (models and the data side
# share rank 3 but may not import each other, see SIDE_BY_SIDE).
RANKS = {
    "_compat": 0,
    "_validation": 0,
    "ops": 1,
    "report_text": 1,
    "image_processing_xray": 1,
    "image_processing_xray_fast": 1,
    "labeler": 1,
    "remote_code": 1,
    "saving": 1,
    "layers": 2,
    "rrg_mamba": 3,
    "emrrg": 3,
    "data": 3,
    "metrics": 3,
    "hub": 4,
    "training": 5,
    "commands": 6,
    "cli": 7,
    "__init__": 8,
    "__main__": 8,
}
MODELS = {"rrg_mamba", "emrrg"}
SIDE_BY_SIDE = {
    ("rrg_mamba", "data"),
    ("rrg_mamba", "metrics"),
    ("emrrg", "data"),
    ("emrrg", "metrics"),
    ("rrg_mamba", "labeler"),
    ("emrrg", "labeler"),
    ("data", "rrg_mamba"),
    ("data", "emrrg"),
    ("metrics", "rrg_mamba"),
    ("metrics", "emrrg"),
    ("rrg_mamba", "emrrg"),
    ("emrrg", "rrg_mamba"),
}


def part_of(module: str) -> str:
    """``modeling_rrg_mamba.rrg_mamba.modeling_rrg_mamba`` -> ``rrg_mamba``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import of the package inside ``path``."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    module_parts = list(relative.parts)
    package_parts = module_parts if path.name == "__init__.py" else module_parts[:-1]
    if path.name == "__init__.py":
        package_parts = module_parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target + "." + alias.name for alias in node.names] if not node.module else [target]
            else:
                names = [node.module or ""]
            found += [(node.lineno, name) for name in names if name.startswith("modeling_rrg_mamba")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("modeling_rrg_mamba")]
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "demo_data" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    importer = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    own = part_of(importer)
    assert own in RANKS, f"{path}: part {own!r} has no rank in the dependency rule (add it to RANKS and the README)"
    for line, target in package_imports(path):
        other = part_of(target)
        if other == own or target == "modeling_rrg_mamba":
            continue
        assert other in RANKS, f"{path}:{line}: imports {target}, a part with no rank"
        assert RANKS[other] <= RANKS[own], (
            f"{path}:{line}: {own} (rank {RANKS[own]}) imports {target} (rank {RANKS[other]})"
        )
        assert (own, other) not in SIDE_BY_SIDE, f"{path}:{line}: {own} must not import {other}"
        if other in MODELS and len(target.split(".")) > 2:
            raise AssertionError(
                f"{path}:{line}: reaches into {target}; import from modeling_rrg_mamba.{other} instead"
            )
