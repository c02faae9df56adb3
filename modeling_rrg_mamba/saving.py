"""What ``save_pretrained`` writes besides transformers' own files, so that a saved folder loads anywhere.

A model or processor of this package saved with ``save_pretrained`` (by hand, by the Trainer at every checkpoint, or
by ``push_to_hub``) also gets:

* the flat copy of the package modules it needs (:mod:`.remote_code`) and ``auto_map`` entries naming them, so that
  ``AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True)`` and
  ``AutoProcessor.from_pretrained(folder, trust_remote_code=True)`` load the folder in a Python process that never
  imported this package (as for any custom model on the Hub). Where the package is imported, the Auto classes use
  its registered classes and need no ``trust_remote_code``;
* a ``tokenizer_config.json`` that every supported transformers series reads
  (:func:`~modeling_rrg_mamba._compat.portable_tokenizer_config`).

The models inherit :class:`RemoteCodeModelMixin`, the processors :class:`RemoteCodeProcessorMixin`. In the flat
copy itself (a folder loaded with ``trust_remote_code``) they add nothing: transformers saves the flat files again.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._compat import portable_tokenizer_config, saves_on_this_rank
from .remote_code import export_remote_code, in_package

PACKAGE = "modeling_rrg_mamba"
#: Auto classes written into config.json for the model. "AutoModelForVision2Seq" is the name transformers 4.x
#: (up to 4.57) uses for image-to-text generators; transformers 5 removed the class and never reads that key.
MODEL_AUTO_CLASSES = ("AutoModel", "AutoModelForImageTextToText", "AutoModelForVision2Seq")
#: Whether this module runs as part of the installed package (not as a file of an exported folder, where the package
#: modules are flat ``transformers_modules.<folder>.<name>`` copies that transformers itself saves again).
RUNS_IN_PACKAGE = __name__.startswith(PACKAGE + ".")
# save_pretrained keyword arguments that only concern the upload (the others also shape the files saved).
_UPLOAD_ONLY_KWARGS = ("repo_id", "commit_message", "commit_description", "private", "token", "revision", "create_pr")


def is_package_object(obj: Any) -> bool:
    """Whether ``obj``'s class is defined in this package (not in transformers, nor in an exported flat copy)."""
    return RUNS_IN_PACKAGE and in_package(type(obj).__module__, PACKAGE)


def _class_reference(obj: Any, flat_names: Mapping[str, str]) -> str:
    cls = type(obj)
    return f"{flat_names[cls.__module__]}.{cls.__name__}"


def _update_auto_map(path: Path, entries: Mapping[str, Any], nested_key: str | None = None) -> None:
    """Merge ``entries`` into the ``auto_map`` of the JSON file ``path`` (of its ``nested_key`` dict if given)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    target = data if nested_key is None else data[nested_key]
    target["auto_map"] = {**target.get("auto_map", {}), **entries}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextlib.contextmanager
def auto_class_unset(objects: Sequence[Any]) -> Iterator[None]:
    """Hide ``_auto_class`` (set by ``register_for_auto_class``) so that transformers' ``save_pretrained`` does not
    copy the code itself: its copier follows only flat ``from .module import`` lines, not the package's imports."""
    saved = []
    for obj in objects:
        if "_auto_class" in vars(type(obj)):
            saved.append((type(obj), type(obj)._auto_class))
            type(obj)._auto_class = None
    try:
        yield
    finally:
        for cls, value in saved:
            cls._auto_class = value


def export_code(folder: str | os.PathLike, objects: Sequence[Any]) -> dict[str, str]:
    """Write the flat code of those ``objects`` defined in this package into ``folder``.

    The modules of the first object's subpackage (e.g. ``modeling_rrg_mamba.emrrg``) keep their names, so a model and
    its processor, exported one after the other into the same folder, name every shared module alike.

    Returns:
        ``{dotted module name: flat file stem}`` (empty when no object is of this package).
    """
    own = [obj for obj in objects if is_package_object(obj)]
    if not own:
        return {}
    home_package = type(own[0]).__module__.rpartition(".")[0]
    return export_remote_code(list(dict.fromkeys(type(obj).__module__ for obj in own)), folder, home_package)


def write_model_auto_map(folder: str | os.PathLike, model: Any, flat_names: Mapping[str, str]) -> None:
    """config.json: ``AutoConfig`` and the model's Auto classes (``remote_code_auto_classes``, by default
    :data:`MODEL_AUTO_CLASSES`) point at the flat modules of ``model``."""
    entries = {"AutoConfig": _class_reference(model.config, flat_names)}
    auto_classes = getattr(model, "remote_code_auto_classes", MODEL_AUTO_CLASSES)
    entries.update({name: _class_reference(model, flat_names) for name in auto_classes})
    _update_auto_map(Path(folder) / "config.json", entries)


def write_processor_auto_maps(folder: str | os.PathLike, processor: Any, flat_names: Mapping[str, str]) -> None:
    """Point the processor's config files of ``folder`` at the flat modules defining their classes.

    processor_config.json: ``AutoProcessor`` and, in its ``image_processor`` entry (transformers 5),
    ``AutoImageProcessor``; preprocessor_config.json (transformers 4): ``AutoImageProcessor``; tokenizer_config.json:
    ``AutoTokenizer`` (only for classes of this package; an LLM tokenizer of transformers itself needs no code).
    """
    folder = Path(folder)
    processor_file = folder / "processor_config.json"
    if processor_file.exists() and is_package_object(processor):
        _update_auto_map(processor_file, {"AutoProcessor": _class_reference(processor, flat_names)})
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None and is_package_object(image_processor):
        entry = {"AutoImageProcessor": _class_reference(image_processor, flat_names)}
        if processor_file.exists() and "image_processor" in json.loads(processor_file.read_text(encoding="utf-8")):
            _update_auto_map(processor_file, entry, nested_key="image_processor")
        if (folder / "preprocessor_config.json").exists():
            _update_auto_map(folder / "preprocessor_config.json", entry)
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None and is_package_object(tokenizer) and (folder / "tokenizer_config.json").exists():
        # [slow, fast] as transformers writes it for a tokenizer class whose name does not end in "Fast"
        _update_auto_map(
            folder / "tokenizer_config.json", {"AutoTokenizer": [_class_reference(tokenizer, flat_names), None]}
        )


def write_auto_maps(folder: str | os.PathLike, model: Any, processor: Any, flat_names: Mapping[str, str]) -> None:
    """Point every config file of ``folder`` at the flat module defining its class: :func:`write_model_auto_map`
    and :func:`write_processor_auto_maps` (``flat_names`` as returned by the export of the code)."""
    write_model_auto_map(folder, model, flat_names)
    write_processor_auto_maps(folder, processor, flat_names)


def make_tokenizer_config_portable(folder: str | os.PathLike) -> None:
    """Rewrite ``folder``/tokenizer_config.json (if any) so that every supported transformers series loads it."""
    path = Path(folder) / "tokenizer_config.json"
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    portable = portable_tokenizer_config(data)
    if portable != data:
        path.write_text(json.dumps(portable, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def processor_parts(processor: Any) -> list[Any]:
    """The processor and its image processor and tokenizer (those it has)."""
    parts = [getattr(processor, name, None) for name in ("image_processor", "tokenizer")]
    return [processor, *[part for part in parts if part is not None]]


class _RemoteCodeOnSave:
    """``save_pretrained`` that also writes what a fresh process needs (see the module docstring); the subclasses say
    which objects are saved and what is written for them."""

    def save_pretrained(
        self, save_directory: str | os.PathLike, *args: Any, push_to_hub: bool = False, **kwargs: Any
    ) -> Any:
        """transformers' ``save_pretrained``, then the flat code and ``auto_map`` entries. With ``push_to_hub=True``
        the folder is saved first and then uploaded with ``push_to_hub``, so that the upload holds the code too."""
        if not is_package_object(self):
            return super().save_pretrained(save_directory, *args, push_to_hub=push_to_hub, **kwargs)
        upload = {key: kwargs.pop(key) for key in _UPLOAD_ONLY_KWARGS if key in kwargs}
        with auto_class_unset(self._objects_saved()):
            result = super().save_pretrained(save_directory, *args, **kwargs)
        if Path(save_directory).is_dir() and self._writes_files(kwargs.get("is_main_process", True)):
            self._write_remote_code(Path(save_directory))
            if push_to_hub:
                self._push_saved(save_directory, upload, kwargs)
        return result

    def _objects_saved(self) -> list[Any]:
        """The objects whose files ``save_pretrained`` writes."""
        raise NotImplementedError

    def _writes_files(self, is_main_process: bool) -> bool:
        """Whether ``save_pretrained`` writes files in this process."""
        return True

    def _write_remote_code(self, folder: Path) -> None:
        """Write the code and ``auto_map`` entries into the saved ``folder``."""
        raise NotImplementedError

    def _push_saved(
        self, save_directory: str | os.PathLike, upload: dict[str, Any], save_kwargs: dict[str, Any]
    ) -> Any:
        """``push_to_hub`` with the upload settings given to ``save_pretrained`` (repository: the folder's name)."""
        repo_id = upload.pop("repo_id", None) or Path(save_directory).resolve().name
        accepted = inspect.signature(self.push_to_hub).parameters
        forwarded = {key: value for key, value in {**save_kwargs, **upload}.items() if key in accepted}
        return self.push_to_hub(repo_id, **forwarded)


class RemoteCodeModelMixin(_RemoteCodeOnSave):
    """Mixed in before ``PreTrainedModel``: ``save_pretrained`` also writes the model's code and config.json's
    ``auto_map`` (``AutoConfig`` and :data:`MODEL_AUTO_CLASSES`)."""

    def _objects_saved(self) -> list[Any]:
        return [self, self.config]

    def _writes_files(self, is_main_process: bool) -> bool:
        return saves_on_this_rank(self, is_main_process)

    def _write_remote_code(self, folder: Path) -> None:
        write_model_auto_map(folder, self, export_code(folder, [self, self.config]))


class RemoteCodeProcessorMixin(_RemoteCodeOnSave):
    """Mixed in before ``ProcessorMixin``: ``save_pretrained`` also writes the code of the processor and its parts,
    their ``auto_map`` entries, and a tokenizer_config.json every supported transformers series reads."""

    def _objects_saved(self) -> list[Any]:
        return processor_parts(self)

    def _write_remote_code(self, folder: Path) -> None:
        write_processor_auto_maps(folder, self, export_code(folder, processor_parts(self)))
        make_tokenizer_config_portable(folder)


__all__ = [
    "MODEL_AUTO_CLASSES",
    "RemoteCodeModelMixin",
    "RemoteCodeProcessorMixin",
    "auto_class_unset",
    "export_code",
    "is_package_object",
    "make_tokenizer_config_portable",
    "processor_parts",
    "write_auto_maps",
    "write_model_auto_map",
    "write_processor_auto_maps",
]
