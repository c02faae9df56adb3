"""Recipes: JSON or YAML files of argument values (``configuration/*.yaml``) that command-line flags override.

A recipe is a flat mapping from argument names (the dataclass field names of `arguments`) to values; mapping
values (``config_overrides``) are passed on as JSON strings, and file arguments (``deepspeed``,
``generation_config``) naming a file next to the recipe are resolved against the recipe's folder.
``rrg-mamba train --recipe FILE [--flag value ...]``
parses the recipe as the defaults, then the command line on top, so anything in a recipe can be changed per run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from .._compat import CHECKPOINTING_ARGUMENTS, checkpointing_arguments_as_installed, fractional_warmup_as_ratio

CONFIGURATION_DIR = Path(__file__).resolve().parents[1] / "configuration"  # the repository's configuration/, packaged
#: Recipe entries naming a file; a relative name that exists next to the recipe is resolved against its folder.
FILE_ARGUMENTS = ("deepspeed", "generation_config")


def resolve_recipe_path(name_or_path: str | os.PathLike) -> Path:
    """A recipe file, or the name of one in ``configuration/`` (with or without the ``.yaml`` / ``.json`` suffix)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (
        CONFIGURATION_DIR / path.name,
        CONFIGURATION_DIR / f"{path.name}.yaml",
        CONFIGURATION_DIR / f"{path.name}.json",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"--recipe: no recipe file {name_or_path} (nor a recipe of that name in {CONFIGURATION_DIR})"
    )


def load_recipe(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML (any other suffix) recipe as a flat dict of argument values."""
    path = resolve_recipe_path(name_or_path)
    text = path.read_text(encoding="utf-8")
    try:
        recipe = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: not a valid recipe file ({error})") from None
    if not isinstance(recipe, dict):
        raise ValueError(
            f"{path}: a recipe must be a mapping of argument names to values, got {type(recipe).__name__}"
        )
    recipe = {key: json.dumps(value) if isinstance(value, dict) else value for key, value in recipe.items()}
    for key in FILE_ARGUMENTS:
        if isinstance(recipe.get(key), str) and (path.parent / recipe[key]).is_file():
            recipe[key] = str((path.parent / recipe[key]).resolve())
    return recipe


def parse_with_recipe(parser: HfArgumentParser, argv: Sequence[str]) -> tuple[Any, ...]:
    """Parse ``argv`` into the parser's dataclasses, taking defaults from ``--recipe FILE`` when it is given."""
    argv = list(argv)
    recipe_path = _pop_option(argv, "--recipe")
    if recipe_path is not None:
        recipe = load_recipe(recipe_path)
        known = {action.dest for action in parser._actions}
        _drop_renamed_settings_the_command_line_sets(recipe, argv)
        checkpointing_arguments_as_installed(recipe, known)
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise ValueError(f"{resolve_recipe_path(recipe_path)}: unknown argument(s) {unknown}")
        fractional_warmup_as_ratio(recipe, known)
        _make_optional(parser, recipe)
        parser.set_defaults(**recipe)
    parsed = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    return tuple(parsed[: len(parser.dataclass_types)])  # without the namespace of extra options (--recipe)


def _drop_renamed_settings_the_command_line_sets(recipe: dict[str, Any], argv: Sequence[str]) -> None:
    """In place: a recipe setting the command line gives under either of its names (``--gradient_checkpointing false``
    against a recipe's ``activation_checkpointing``) is left to the command line."""
    flags = {item[2:].split("=", 1)[0] for item in argv if item.startswith("--")}
    for names in CHECKPOINTING_ARGUMENTS:
        if flags & set(names):
            for name in names:
                recipe.pop(name, None)


def _pop_option(argv: list[str], option: str) -> str | None:
    """Remove ``option VALUE`` or ``option=VALUE`` from ``argv`` and return VALUE (``None`` when absent)."""
    for index, item in enumerate(argv):
        if item == option:
            if index + 1 >= len(argv):
                raise ValueError(f"{option}: expected a file name after it")
            value = argv[index + 1]
            del argv[index : index + 2]
            return value
        if item.startswith(option + "="):
            del argv[index]
            return item.split("=", 1)[1]
    return None


def _make_optional(parser: HfArgumentParser, recipe: dict[str, Any]) -> None:
    """Arguments a recipe sets need not be repeated on the command line."""
    for action in parser._actions:
        if action.dest in recipe:
            action.required = False


__all__ = ["CONFIGURATION_DIR", "FILE_ARGUMENTS", "load_recipe", "parse_with_recipe", "resolve_recipe_path"]
