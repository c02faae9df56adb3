"""Stand-in for transformers' ``tests/generation/test_utils.py``, which its source distribution does not ship.

``ModelTesterMixin`` imports ``GenerationTesterMixin`` from here and requires a tester of a model that can generate
to inherit it. The generation tests themselves are not available from the registry; rrg-mamba's own generation tests
(``tests/test_generation_equivalence.py``: greedy and beam search, cached = uncached = step-by-step full forwards)
cover that ground, so this mixin adds no tests.
"""


class GenerationTesterMixin:
    """No tests: see the module docstring."""
