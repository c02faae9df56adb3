"""Write the running environment's exact package versions to a lock file (``scripts/update_lock.sh`` calls this only
after the whole suite passed in that environment).

    python scripts/write_lock.py requirements/lock.txt [--bump-pyproject]

``--bump-pyproject`` also moves pyproject.toml's tested upper bound of transformers (``<X.Y``) to the minor after the
installed one, when that is newer.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import subprocess
import sys
from pathlib import Path

import transformers
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
_TRANSFORMERS_BOUND = re.compile(r'("transformers>=[0-9.]+,<)([0-9]+)\.([0-9]+)(")')


def frozen_requirements() -> list[str]:
    """``pip freeze`` of this interpreter's environment, without the editable install of rrg-mamba itself."""
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    )
    return sorted((line for line in completed.stdout.splitlines() if line and not line.startswith("#")), key=str.lower)


def write_lock(path: Path) -> None:
    header = [
        f"# Exact versions the whole test suite last passed on ({datetime.date.today().isoformat()}, Python "
        f"{platform.python_version()}, {platform.machine()}).",
        "# Written by scripts/update_lock.sh; scripts/bootstrap.sh installs from it. Do not edit by hand.",
    ]
    path.write_text("\n".join(header + frozen_requirements()) + "\n", encoding="utf-8")


def bump_transformers_bound(pyproject: Path) -> None:
    """Move ``transformers>=A,<X.Y`` to ``<X.(Y'+1)`` where X.Y' is the installed release, if that is higher."""
    text = pyproject.read_text(encoding="utf-8")
    match = _TRANSFORMERS_BOUND.search(text)
    if match is None:
        raise SystemExit(f"{pyproject}: no 'transformers>=A,<X.Y' requirement to move")
    installed = Version(transformers.__version__)
    bound = Version(f"{installed.major}.{installed.minor + 1}")
    if bound > Version(f"{match.group(2)}.{match.group(3)}"):
        pyproject.write_text(_TRANSFORMERS_BOUND.sub(rf"\g<1>{bound}\g<4>", text, count=1), encoding="utf-8")
        print(f"[write_lock] pyproject.toml: transformers upper bound moved to <{bound}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--bump-pyproject", action="store_true")
    arguments = parser.parse_args()
    write_lock(arguments.lock)
    if arguments.bump_pyproject:
        bump_transformers_bound(PYPROJECT)


if __name__ == "__main__":
    main()
