"""rrg-mamba: RRG-Mamba and EMRRG radiology report generators for Hugging Face transformers.

Every public name of the subpackages (the ``__all__`` of :mod:`.ops`, :mod:`.layers`, :mod:`.rrg_mamba`,
:mod:`.emrrg`, :mod:`.data`, :mod:`.labeler`, :mod:`.metrics`, :mod:`.report_text`, :mod:`.image_processing_xray`,
:mod:`.training` and :mod:`.hub`) can be imported from here: ``from modeling_rrg_mamba import
RRGMambaForConditionalGeneration, selective_scan, label_report``. Imports are lazy: ``import modeling_rrg_mamba``
imports neither torch nor transformers; a name's subpackage is imported the first time the name is used.

The models are registered with the transformers Auto classes (``AutoConfig``, ``AutoModelForImageTextToText``,
``AutoProcessor``, ``AutoTokenizer``, ``AutoImageProcessor``) without importing them here: importing the package
arranges for the first look-up in one of those registries (``AutoConfig.from_pretrained(path)`` and friends) to
import :mod:`.rrg_mamba` and :mod:`.emrrg`, whose import registers them. :func:`register_auto_classes` does it at
once.
"""

from __future__ import annotations

import ast
import importlib
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Subpackages / modules whose ``__all__`` is re-exported here, in the order of the dependency graph.
_EXPORTING_MODULES = (
    "ops",
    "layers",
    "report_text",
    "image_processing_xray",
    "rrg_mamba",
    "emrrg",
    "data",
    "labeler",
    "metrics",
    "training",
    "hub",
)
# Submodules reachable as attributes (``modeling_rrg_mamba.commands``) without being re-exported.
_OTHER_SUBMODULES = ("commands", "cli")

if TYPE_CHECKING:  # static analysers and IDEs see the re-exports; at run time __getattr__ imports them
    from .data import *  # noqa: F403
    from .emrrg import *  # noqa: F403
    from .hub import *  # noqa: F403
    from .image_processing_xray import *  # noqa: F403
    from .labeler import *  # noqa: F403
    from .layers import *  # noqa: F403
    from .metrics import *  # noqa: F403
    from .ops import *  # noqa: F403
    from .report_text import *  # noqa: F403
    from .rrg_mamba import *  # noqa: F403
    from .training import *  # noqa: F403


def _read_all(module: str) -> list[str]:
    """``__all__`` of a submodule, read from its source without importing it (public functions and classes when it
    has no ``__all__``)."""
    path = Path(__file__).parent / module
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except OSError:  # no source (a bytecode-only install): import the module instead
        imported = importlib.import_module(f".{module}", __name__)
        return list(imported.__all__)
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
                return list(ast.literal_eval(node.value))
    return [
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
    ]


#: Public name -> the submodule that exports it (built from the submodules' ``__all__``, without importing them).
_NAME_TO_MODULE: dict[str, str] = {}
for _module in _EXPORTING_MODULES:
    for _name in _read_all(_module):
        if _name in _NAME_TO_MODULE:
            raise ImportError(
                f"modeling_rrg_mamba: {_name!r} is exported by both .{_NAME_TO_MODULE[_name]} and "
                f".{_module}; public names must be unique across the package"
            )
        _NAME_TO_MODULE[_name] = _module
del _module, _name


def __getattr__(name: str) -> Any:
    module = _NAME_TO_MODULE.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    if name in _EXPORTING_MODULES or name in _OTHER_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAME_TO_MODULE) | set(_EXPORTING_MODULES) | set(_OTHER_SUBMODULES))


# ---------------------------------------------------------------------------------------------------------------
# Registration with the transformers Auto classes, deferred to the first look-up.
#
# transformers keeps what ``AutoConfig.register`` & co. add in the ``_extra_content`` dict of each Auto mapping and
# reads it on every look-up by name (``CONFIG_MAPPING["rrg_mamba"]``, ``tokenizer_class_from_name``, ...). Once the
# module defining a mapping has run, its dict is swapped for one that imports the two model packages (which
# register themselves) before its first read. Look-ups by config class (``AutoModel.from_config(config)``) need
# nothing: a config object of this package exists only once its model package has been imported.

_AUTO_MAPPINGS = {
    "transformers.models.auto.configuration_auto": "CONFIG_MAPPING",
    "transformers.models.auto.tokenization_auto": "TOKENIZER_MAPPING",
    "transformers.models.auto.image_processing_auto": "IMAGE_PROCESSOR_MAPPING",
    "transformers.models.auto.processing_auto": "PROCESSOR_MAPPING",
}
# While one of these is being imported, registering would import a half-initialised module: wait for the next read.
_NOT_WHILE_IMPORTING = ("transformers.models.auto", "peft", f"{__name__}.rrg_mamba", f"{__name__}.emrrg")
_registration_lock = threading.RLock()
_registration_state = "pending"  # "running" while the model packages are being imported, then "done"


def register_auto_classes() -> None:
    """Register RRG-Mamba and EMRRG with the transformers Auto classes now, by importing both model packages.

    Not needed in normal use: after ``import modeling_rrg_mamba`` the first look-up in an Auto registry (for
    instance ``AutoConfig.from_pretrained`` or ``AutoModelForImageTextToText.from_pretrained`` on a saved model)
    does it. Registered: model types ``"rrg_mamba"``, ``"emrrg"`` and ``"xray_mamba"`` with ``AutoConfig``; the
    models with ``AutoModel`` and ``AutoModelForImageTextToText`` (and ``AutoModelForVision2Seq`` on transformers
    4.x); their processors, image processors and the RRG-Mamba tokenizer with ``AutoProcessor``,
    ``AutoImageProcessor`` and ``AutoTokenizer``.
    """
    global _registration_state
    with _registration_lock:
        if _registration_state != "pending":
            return
        _registration_state = "running"
        try:
            importlib.import_module(".rrg_mamba", __name__)
            importlib.import_module(".emrrg", __name__)
        except BaseException:
            _registration_state = "pending"
            raise
        _registration_state = "done"


def _being_imported(prefixes: tuple[str, ...]) -> bool:
    for name, module in list(sys.modules.items()):
        if name.startswith(prefixes) and getattr(getattr(module, "__spec__", None), "_initializing", False):
            return True
    return False


def _register_before_read() -> None:
    if _registration_state == "done":
        return
    if _registration_state == "pending" and _being_imported(_NOT_WHILE_IMPORTING):
        return
    register_auto_classes()  # waits while another thread registers


class _RegisteringDict(dict):
    """The ``_extra_content`` of a transformers Auto mapping that registers this package's models before the first
    read."""

    def __getitem__(self, key):
        _register_before_read()
        return super().__getitem__(key)

    def __contains__(self, key):
        _register_before_read()
        return super().__contains__(key)

    def __iter__(self):
        _register_before_read()
        return super().__iter__()

    def __len__(self):
        _register_before_read()
        return super().__len__()

    def get(self, key, default=None):
        _register_before_read()
        return super().get(key, default)

    def keys(self):
        _register_before_read()
        return super().keys()

    def values(self):
        _register_before_read()
        return super().values()

    def items(self):
        _register_before_read()
        return super().items()

    def copy(self):
        _register_before_read()
        return dict(super().items())


def _install_registering_dict(module: ModuleType) -> None:
    mapping = getattr(module, _AUTO_MAPPINGS[module.__name__], None)
    extra = getattr(mapping, "_extra_content", None)
    if type(extra) is dict:
        mapping._extra_content = _RegisteringDict(extra)
    elif not isinstance(extra, _RegisteringDict):  # a transformers release that keeps registrations elsewhere
        warnings.warn(
            f"modeling_rrg_mamba: {module.__name__} has no {_AUTO_MAPPINGS[module.__name__]}._extra_content "
            "dict, so the models cannot be registered with the Auto classes lazily; call "
            "modeling_rrg_mamba.register_auto_classes() before using them",
            stacklevel=2,
        )


class _AutoMappingFinder:
    """Meta-path finder: lets the usual finders load the transformers modules that define the Auto mappings and
    swaps each mapping's registrations dict once its module has run."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname not in _AUTO_MAPPINGS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            exec_module = loader.exec_module

            def exec_and_install(module: ModuleType) -> None:
                exec_module(module)
                _install_registering_dict(module)

            loader.exec_module = exec_and_install
        return spec


def _arrange_auto_registration() -> None:
    if any(isinstance(finder, _AutoMappingFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _AutoMappingFinder())
    for name in _AUTO_MAPPINGS:  # mappings that exist already (transformers' Auto classes were used before)
        module = sys.modules.get(name)
        if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False):
            _install_registering_dict(module)


_arrange_auto_registration()

__all__ = ["register_auto_classes", *_NAME_TO_MODULE]
