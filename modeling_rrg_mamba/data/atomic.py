"""Files written whole or not at all: each output file is written beside its final place and renamed over it (an
atomic step), so a crash, a kill or a full disk never leaves a half-written file nor damages the earlier one; and a
command that fails leaves none of the folders or empty files it created behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


@contextlib.contextmanager
def replaced_file(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block succeeds, removed when it
    fails (``with replaced_file(out) as partial: image.save(partial, format="PNG")``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.partial-")
    os.close(handle)
    partial = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o666 & ~umask)  # as a plain open() would create it (mkstemp makes it private)
    try:
        yield partial
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text_whole(path: str | os.PathLike, text: str) -> None:
    """``path.write_text(text)``, through a temporary file and an atomic rename."""
    with replaced_file(path) as partial:
        partial.write_text(text, encoding="utf-8")


def _missing_parts(path: Path) -> list[Path]:
    """``path`` and its parents that do not exist yet, deepest first."""
    return [part for part in [path, *path.parents] if not part.exists() and not part.is_symlink()]


def _holds_no_file(folder: Path) -> bool:
    return folder.is_dir() and not any(p.is_file() or p.is_symlink() for p in folder.rglob("*"))


@contextlib.contextmanager
def nothing_left_on_failure(paths: Iterable[str | os.PathLike | None]) -> Iterator[None]:
    """When the block fails, remove what it created of ``paths`` (outputs: files and folders) and their parent
    folders, as long as they hold no file: a failed command leaves no empty output folder or empty file behind."""
    created = [part for path in paths if path is not None for part in _missing_parts(Path(path).absolute())]
    try:
        yield
    except BaseException:
        for part in sorted(set(created), key=lambda p: len(p.parts), reverse=True):  # deepest first
            with contextlib.suppress(OSError):
                if part.is_file() and not part.is_symlink() and part.stat().st_size == 0:
                    part.unlink()
                elif _holds_no_file(part):
                    for folder in sorted(part.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                        folder.rmdir()
                    part.rmdir()
        raise


__all__ = ["nothing_left_on_failure", "replaced_file", "write_text_whole"]
