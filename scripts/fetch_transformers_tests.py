"""Make transformers' own common test mixins importable for rrg-mamba's peer suite (``tests/peer/``).

transformers' source distribution on the package registry ships ``tests/test_modeling_common.py``
(``ModelTesterMixin``), ``tests/test_configuration_common.py`` (``ConfigTester``) and the other common mixins. This
script downloads the source distribution of the INSTALLED transformers release (as pip downloads any package; nothing
of it is committed to this repository), extracts those common files into ``<dest>/transformers_tests/`` as a package,
and adds rrg-mamba's stand-ins (``tests/peer/standins/``) for the three modules they import that the source
distribution does not ship. ``scripts/bootstrap.sh`` runs it once per environment.

    python scripts/fetch_transformers_tests.py [--dest DIR]     # default: <sys.prefix>/transformers-common-tests
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

STANDINS = Path(__file__).resolve().parents[1] / "tests" / "peer" / "standins"
DEFAULT_DEST = Path(sys.prefix) / "transformers-common-tests"
PACKAGE = "transformers_tests"


def download_sdist(version: str, folder: Path) -> Path:
    """The source distribution of ``transformers==version``, downloaded by pip into ``folder``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"transformers=={version}",
            "-d",
            str(folder),
        ],
        check=True,
    )
    archives = sorted(folder.glob("transformers-*.tar.gz"))
    if not archives:
        raise SystemExit(f"pip downloaded no source distribution of transformers {version} into {folder}")
    return archives[0]


def extract_common_tests(archive: Path, package: Path) -> list[str]:
    """Extract the top-level ``tests/test_*.py`` files of ``archive`` into ``package``; returns their names."""
    names = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py"):
                source = tar.extractfile(member)
                assert source is not None
                (package / parts[2]).write_bytes(source.read())
                names.append(parts[2])
    if "test_modeling_common.py" not in names:
        raise SystemExit(f"{archive.name}: no tests/test_modeling_common.py in this source distribution")
    return names


def add_standins(package: Path) -> None:
    """Copy the stand-ins for modules the source distribution lacks; every folder becomes a package."""
    for source in STANDINS.rglob("*.py"):
        target = package / source.relative_to(STANDINS)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(source, target)
    for folder in [package, *[p for p in package.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()


def fetch(dest: Path) -> Path:
    """Populate ``dest`` for the installed transformers (kept if already there for that release)."""
    version = transformers.__version__
    marker = dest / f".transformers-{version}"
    if marker.is_file():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    package = dest / PACKAGE
    package.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as download:
        names = extract_common_tests(download_sdist(version, Path(download)), package)
    add_standins(package)
    marker.write_text("\n".join(sorted(names)) + "\n", encoding="utf-8")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    arguments = parser.parse_args()
    print(fetch(arguments.dest))


if __name__ == "__main__":
    main()
