"""Shared test set-up.

The pytest markers that transformers' common tests (``tests/peer/``) use are registered here: transformers' own
conftest.py, which declares them, is not in its source distribution. They are read off the installed release's files,
so a marker a new release adds is registered too and ``--strict-markers`` keeps catching typos in our own tests.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

_MARKER = re.compile(r"\bmark\.([A-Za-z_][A-Za-z0-9_]*)")
_BUILTIN_MARKERS = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings"}


def _peer_marker_names() -> set[str]:
    """Marker names used in transformers' testing utilities and the fetched common tests (read, not imported)."""
    testing_utils = importlib.util.find_spec("transformers.testing_utils")
    sources = [Path(testing_utils.origin)] if testing_utils and testing_utils.origin else []
    sources += (Path(sys.prefix) / "transformers-common-tests").rglob("test_*common*.py")
    return {name for source in sources for name in _MARKER.findall(source.read_text(encoding="utf-8"))}


def pytest_configure(config) -> None:
    for name in sorted(_peer_marker_names() - _BUILTIN_MARKERS):
        config.addinivalue_line("markers", f"{name}: used by transformers' common tests")
