"""Print the dependencies of pyproject.toml (and of the named extras) without their version bounds, one per line.

Used by ``scripts/bootstrap.sh --latest`` to install the newest release of everything the package needs, beyond the
tested upper bounds of pyproject.toml. Environment markers are kept; extras of a dependency (``pkg[extra]``) too.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?)")


def unbounded(requirement: str) -> str:
    """``"transformers>=4.57,<5.25; python_version>='3.10'"`` -> ``"transformers; python_version>='3.10'"``."""
    requirement, _, marker = requirement.partition(";")
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"pyproject.toml: cannot read the requirement {requirement!r}")
    return match.group(1) + (f"; {marker.strip()}" if marker.strip() else "")


def main(pyproject: str, *extras: str) -> None:
    project = tomllib.loads(Path(pyproject).read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        if extra not in project.get("optional-dependencies", {}):
            raise SystemExit(f"{pyproject}: no optional-dependencies group {extra!r}")
        requirements += project["optional-dependencies"][extra]
    print("\n".join(dict.fromkeys(unbounded(item) for item in requirements)))


if __name__ == "__main__":
    main(*sys.argv[1:])
