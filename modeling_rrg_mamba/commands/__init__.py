"""What the ``rrg-mamba`` commands do besides training: generate reports (with word heatmaps), score predictions,
and the offline demo. Sits on :mod:`..training`; only the CLI is above it.

Submodules are imported by the command that needs them, so that ``rrg-mamba --help`` stays fast.
"""
