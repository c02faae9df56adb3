"""rrg-mamba: RRG-Mamba and EMRRG radiology report generators for Hugging Face transformers.

Importing the package registers both models (configs, models, processors, tokenizer) with the transformers
Auto classes.
"""

from . import emrrg, rrg_mamba  # noqa: F401  (Auto-class registration)

__version__ = "0.1.0"
