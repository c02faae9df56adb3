"""Stand-in for transformers' ``tests/exporters/test_export.py``, which its source distribution does not ship.

``ModelTesterMixin`` derives from ``ExportTesterMixin``; the ``torch.export`` tests live in that file and are not
available from the registry, so this stand-in adds no tests.
"""


class ExportTesterMixin:
    """No tests: see the module docstring."""
