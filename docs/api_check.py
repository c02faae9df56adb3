"""Checks that keep the API reference complete: every name of ``modeling_rrg_mamba.__all__`` has a docstring and is
documented by exactly one ``.. auto*::`` directive of ``docs/api/*.rst``, which documents nothing else.

Run by ``docs/conf.py`` at the start of every build (each problem is a Sphinx warning, so ``-W`` fails the build) and
by ``tests/test_public_api.py``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections import defaultdict
from pathlib import Path

API_PAGES = Path(__file__).resolve().parent / "api"
_DIRECTIVE = re.compile(r"^\.\.\s+auto(?:class|function|data|exception|attribute)::\s+(\S+)", re.MULTILINE)


def documented_names() -> dict[str, list[str]]:
    """Name -> the API pages (file names) whose ``.. auto*::`` directives document it."""
    pages = defaultdict(list)
    for page in sorted(API_PAGES.glob("*.rst")):
        for name in _DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            pages[name.removeprefix("modeling_rrg_mamba.")].append(page.name)
    return dict(pages)


def _generated_doc(cls: type, doc: str) -> bool:
    """The docstring Python writes for a dataclass or namedtuple without one (``Name(field, ...)``)."""
    return doc.startswith(f"{cls.__name__}(")


def _attribute_docs(module_name: str) -> dict[str, str]:
    """Module-level ``#:`` comments and docstrings after assignments of a package and all its submodules."""
    from sphinx.pycode import ModuleAnalyzer

    module = importlib.import_module(module_name)
    names = [module_name]
    if hasattr(module, "__path__"):
        names += [info.name for info in pkgutil.walk_packages(module.__path__, f"{module_name}.")]
    docs = {}
    for name in names:
        try:
            found = ModuleAnalyzer.for_module(name).find_attr_docs()
        except Exception:  # no source
            continue
        for (scope, attribute), lines in found.items():
            if scope == "" and "".join(lines).strip():
                docs.setdefault(attribute, "\n".join(lines))
    return docs


def docstring_of(name: str) -> str | None:
    """The docstring a user sees for ``modeling_rrg_mamba.<name>`` (``None`` when it has none of its own)."""
    import modeling_rrg_mamba

    obj = getattr(modeling_rrg_mamba, name)
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        return None if not doc or _generated_doc(obj, doc) else doc
    if inspect.isroutine(obj):
        return obj.__doc__ or None
    docs = _attribute_docs(f"modeling_rrg_mamba.{modeling_rrg_mamba._NAME_TO_MODULE[name]}")
    if name not in docs:  # a constant the subpackage re-exports from a module outside it (hub: from ..saving)
        docs = _attribute_docs("modeling_rrg_mamba")
    return docs.get(name)


def api_problems() -> list[str]:
    """Every way the public API and its reference disagree, one line each (empty when they agree)."""
    import modeling_rrg_mamba

    public = list(modeling_rrg_mamba.__all__)
    documented = documented_names()
    problems = []
    for name in public:
        pages = documented.get(name, [])
        if not pages:
            problems.append(f"modeling_rrg_mamba.{name} is public (__all__) but no page of docs/api/ documents it")
        elif len(pages) > 1:
            problems.append(f"modeling_rrg_mamba.{name} is documented more than once: {', '.join(pages)}")
    for name, pages in sorted(documented.items()):
        if name not in public:
            problems.append(
                f"docs/api/{pages[0]} documents {name}, which is not in modeling_rrg_mamba.__all__ "
                "(renamed or removed?)"
            )
    for name in public:
        if not (docstring_of(name) or "").strip():
            where = modeling_rrg_mamba._NAME_TO_MODULE.get(name, "")
            problems.append(f"modeling_rrg_mamba.{name} (from modeling_rrg_mamba.{where}) has no docstring")
    return problems


if __name__ == "__main__":
    import sys

    found = api_problems()
    print("\n".join(found) or "public API and reference agree")
    sys.exit(1 if found else 0)
