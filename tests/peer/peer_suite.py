"""Import transformers' common test mixins for the installed release (fetched by ``scripts/bootstrap.sh`` through
``scripts/fetch_transformers_tests.py``), or fail with what to run."""

from __future__ import annotations

import sys
from pathlib import Path

import transformers

COMMON_TESTS = Path(sys.prefix) / "transformers-common-tests"
MARKER = COMMON_TESTS / f".transformers-{transformers.__version__}"

if not MARKER.is_file():
    raise ImportError(
        f"transformers {transformers.__version__}'s common tests are not in {COMMON_TESTS}: run "
        "`python scripts/fetch_transformers_tests.py` with this environment's python (scripts/bootstrap.sh does)"
    )
if str(COMMON_TESTS) not in sys.path:
    sys.path.insert(0, str(COMMON_TESTS))

from transformers_tests.generation.test_utils import GenerationTesterMixin  # noqa: E402
from transformers_tests.test_configuration_common import ConfigTester  # noqa: E402
from transformers_tests.test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor  # noqa: E402

__all__ = ["ConfigTester", "GenerationTesterMixin", "ModelTesterMixin", "floats_tensor", "ids_tensor"]
