"""rrg-mamba: RRG-Mamba and EMRRG radiology report generators for Hugging Face transformers.

Importing the package registers both models with the transformers Auto classes.
"""

from . import emrrg  # noqa: F401  (registers EMRRG with the Auto classes)

__version__ = "0.1.0"
