"""Sphinx configuration of the rrg-mamba API reference (``bash scripts/build_docs.sh``).

Why Sphinx: the docstrings are reStructuredText (``:func:`` / ``:class:`` roles, ``::`` literal blocks, Google-style
``Args:`` sections through napoleon), which Sphinx renders as written; autodoc documents the objects that
``import modeling_rrg_mamba`` really exposes, so a renamed public name is an import failure and, with ``-W``, a
failed build; it builds offline (no intersphinx, no remote theme assets); MyST includes the README's sections as the
guide pages, so their prose lives in one place.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # document the working tree
sys.path.insert(0, str(DOCS))

from api_check import api_problems, docstring_of  # noqa: E402

import modeling_rrg_mamba  # noqa: E402

project = "rrg-mamba"
release = version = modeling_rrg_mamba.__version__
copyright = "rrg-mamba authors, Apache-2.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "README.md"]
root_doc = "index"

autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False  # a class without its own docstring shows nothing rather than its base's
autoclass_content = "class"  # constructor arguments are documented in the class docstring, as in transformers
napoleon_google_docstring = True
napoleon_numpy_docstring = False
add_module_names = False
python_display_short_name = True

myst_heading_anchors = 2
html_theme = "furo"
html_title = f"rrg-mamba {release}"


def _check_public_api(app):
    from sphinx.util import logging

    logger = logging.getLogger("rrg_mamba.api_check")
    for problem in api_problems():
        logger.warning(problem)  # sphinx-build -W: any problem fails the build


def _constant_docstring(app, what, name, obj, options, lines):
    """A constant documented as ``modeling_rrg_mamba.NAME`` gets the ``#:`` comment of the module that defines it
    (autodoc would look in ``modeling_rrg_mamba/__init__.py``, find none, and show the docstring of ``tuple`` /
    ``str`` / ``dict``)."""
    short = name.removeprefix("modeling_rrg_mamba.")
    if what == "data" and short in modeling_rrg_mamba.__all__:
        lines[:] = (docstring_of(short) or "").splitlines()


def setup(app):
    app.connect("builder-inited", _check_public_api)
    app.connect("autodoc-process-docstring", _constant_docstring)
