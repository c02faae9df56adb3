"""The reproducible README path: lock files that cover pyproject.toml, and the scripts that move them forward."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCKS = sorted((REPO / "requirements").glob("lock*.txt"))
sys.path.insert(0, str(REPO / "scripts"))

from dependency_names import unbounded  # noqa: E402
from write_lock import bump_transformers_bound  # noqa: E402


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(item) for item in project["dependencies"] + project["optional-dependencies"]["dev"]]


def pins(lock: Path) -> dict[str, Version]:
    found = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{lock.name}: {line!r} is not an exact pin"
            found[canonicalize_name(name)] = Version(version.split(";")[0].strip())
    return found


def test_there_is_a_lock_for_the_readme_path_and_for_transformers_4_57():
    assert {lock.name for lock in LOCKS} >= {"lock.txt", "lock-transformers-4.57.txt"}


@pytest.mark.parametrize("lock", LOCKS, ids=lambda path: path.name)
def test_every_dependency_is_pinned_within_the_project_ranges(lock):
    pinned = pins(lock)
    for requirement in project_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock.name}: {requirement.name} is not locked"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock.name}: {requirement.name}=={pinned[name]} is outside pyproject.toml's {requirement.specifier}"
        )


def test_the_4_57_lock_holds_the_4_57_series():
    assert pins(REPO / "requirements" / "lock-transformers-4.57.txt")["transformers"].release[:2] == (4, 57)


def test_dependency_names_drop_bounds_and_keep_extras_and_markers():
    assert unbounded("transformers>=4.57,<5.25") == "transformers"
    assert unbounded("mamba-ssm[causal-conv1d] >= 2.2 ; platform_system == 'Linux'") == (
        "mamba-ssm[causal-conv1d]; platform_system == 'Linux'"
    )
    with pytest.raises(ValueError, match="cannot read"):
        unbounded(">=1.0")
    listed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "dependency_names.py"), str(REPO / "pyproject.toml"), "dev"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert {"torch", "transformers", "peft", "pytest"} <= set(listed)


def test_the_tested_upper_bound_moves_only_forward(tmp_path, monkeypatch):
    import write_lock

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('dependencies = [\n    "transformers>=4.57,<5.24",\n]\n')
    monkeypatch.setattr(write_lock.transformers, "__version__", "5.30.1")
    bump_transformers_bound(pyproject)
    assert '"transformers>=4.57,<5.31"' in pyproject.read_text()
    monkeypatch.setattr(write_lock.transformers, "__version__", "5.24.0")
    bump_transformers_bound(pyproject)
    assert '"transformers>=4.57,<5.31"' in pyproject.read_text()
