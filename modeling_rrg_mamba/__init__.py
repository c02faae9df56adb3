"""rrg-mamba: RRG-Mamba and EMRRG radiology report generators for Hugging Face transformers."""

__version__ = "0.1.0"
