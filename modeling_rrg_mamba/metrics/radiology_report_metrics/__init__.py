"""Directory of the ``evaluate`` metric script; load it with ``evaluate.load(REPORT_METRICS_PATH)``."""
