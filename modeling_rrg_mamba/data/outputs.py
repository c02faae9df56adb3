"""Output paths checked before any work starts, and JSON Lines written as the work goes (so a crash loses nothing).

Errors raise `OutputPathError` (a ``ValueError``) naming the flag and the path and saying what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from .jsonl import reject_duplicate_keys


class OutputPathError(ValueError):
    """An output file or folder that cannot be written (a directory, a file in the way, no permission, ...)."""


def _probe_folder(folder: Path, flag: str) -> None:
    """The folder exists or can be created, and is writable (as root too): a temporary file is created and removed
    in it or in its nearest existing parent. Nothing is left behind, so a refused command creates no folder."""
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            raise OutputPathError(f"{flag}: {parent} is a file, not a folder; choose another output location")
    existing = next(part for part in [folder, *folder.parents] if part.is_dir() or part == part.parent)
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".rrg-mamba-write-test-")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise OutputPathError(
            f"{flag}: cannot write to {folder} ({error.strerror or error}); choose a writable location"
        ) from None


def check_not_an_input(path: Path, flag: str, inputs: Iterable[str | os.PathLike | None]) -> None:
    """An output is never one of the command's inputs, nor a folder holding one (paths compared resolved)."""
    target = path.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source or target in source.parents:
            raise OutputPathError(
                f"{flag}: {path} is {'' if target == source else 'a folder holding '}the input {given}; "
                "writing there would destroy it: choose another output"
            )


def check_output_file(path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """``path`` can be written as a file: not a folder, not one of ``inputs``, its folder exists or can be created
    and is writable."""
    path = Path(path)
    check_not_an_input(path, flag, inputs)
    if path.is_dir():
        raise OutputPathError(f"{flag}: {path} is a folder; give a file name (e.g. {path / 'reports.jsonl'})")
    _probe_folder(path.parent if str(path.parent) else Path("."), flag)
    if path.exists():
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as error:
            raise OutputPathError(f"{flag}: cannot write {path} ({error.strerror or error})") from None
    return path


def check_output_dir(path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """``path`` is (or can be created as) a writable folder, not one of ``inputs`` nor inside one (its files would
    mix with the command's own inputs). Nothing is created here."""
    path = Path(path)
    check_not_an_input(path, flag, inputs)
    resolved = path.resolve()
    for given in inputs:
        if given is not None and Path(given).is_dir() and Path(given).resolve() in resolved.parents:
            raise OutputPathError(
                f"{flag}: {path} is inside the input folder {given}; its files would mix with the inputs: "
                "choose a folder outside it"
            )
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag}: {path} is a file, not a folder; choose another output folder")
    _probe_folder(path, flag)
    return path


def check_new_output_dir(
    path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike | None] = (), overwrite: bool = False
) -> Path:
    """``path`` may receive a command's whole output folder: not one of ``inputs``, and empty or absent unless
    ``overwrite``. Nothing is created here (see `replaced_dir`), so a refused command leaves no folder behind."""
    path = Path(path)
    check_not_an_input(path, flag, inputs)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag}: {path} is a file, not a folder; choose another output folder")
    entries = sorted(entry.name for entry in path.iterdir()) if path.is_dir() else []
    if entries and not overwrite:
        what = "a saved model" if "config.json" in entries else f"{len(entries)} entries"
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise OutputPathError(
            f"{flag}: {path} already holds {what} ({shown}); choose a new or empty folder, or pass --overwrite "
            "to replace it whole"
        )
    _probe_folder(path.parent, flag)
    return path


@contextlib.contextmanager
def replaced_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Write a folder beside its final place and move it there whole when the block succeeds: an earlier folder is
    replaced (no stale file of it is left beside the new ones), a failure leaves neither a partial nor an empty
    folder behind (``with replaced_dir(out) as staging: model.save_pretrained(staging)``)."""
    path = Path(path)
    created = [folder for folder in [path.parent, *path.parent.parents] if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-"))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    previous = path.with_name(f".{path.name}.replaced-{os.getpid()}") if path.exists() else None
    if previous is not None:
        path.rename(previous)
    staging.rename(path)
    if previous is not None:
        shutil.rmtree(previous)


def read_jsonl_records(path: str | os.PathLike, repair: bool = False) -> list[dict[str, Any]]:
    """The records of a JSONL file written by `JsonlWriter`. A last line cut short (the writer was killed) is
    dropped, and with ``repair=True`` cut off the file; a bad line elsewhere raises naming it."""
    path = Path(path)
    raw_lines = path.read_bytes().splitlines(keepends=True)
    records, good_bytes = [], 0
    for number, raw in enumerate(raw_lines, start=1):
        try:
            record = json.loads(raw.decode("utf-8"), object_pairs_hook=reject_duplicate_keys) if raw.strip() else None
        except (UnicodeDecodeError, ValueError):
            if number == len(raw_lines) and not raw.endswith(b"\n"):
                break  # cut short by a kill: the study is generated again
            raise OutputPathError(f"{path}: line {number} is not a JSON record; fix or remove it") from None
        if record is not None and not isinstance(record, dict):
            raise OutputPathError(
                f"{path}: line {number} is a JSON {type(record).__name__}, not a record (object); "
                "this file was not written by rrg-mamba: choose another output or remove it"
            )
        if record is not None:
            records.append(record)
        good_bytes += len(raw)
    if repair and good_bytes < path.stat().st_size:
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
    return records


_FINGERPRINT_FILES = ("*.safetensors", "pytorch_model.bin", "config.json", "generation_config.json")
_SAMPLE_BYTES, _SAMPLES = 1 << 20, 16


def model_fingerprint(model_dir: str | os.PathLike) -> str:
    """A short (12 hex) hash of a saved model's weights and configs: sizes plus 16 evenly spaced 1 MiB samples of each
    file (a retrained or different model changes it; hashing every byte of a 7B model would cost a minute)."""
    digest = hashlib.sha256()
    folder = Path(model_dir)
    for path in sorted(p for pattern in _FINGERPRINT_FILES for p in folder.glob(pattern) if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as handle:
            for sample in range(_SAMPLES):
                handle.seek(size * sample // _SAMPLES)
                digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()[:12]


def check_same_producer(path: Path, records: list[dict[str, Any]], producer: dict[str, Any]) -> None:
    """Resume only a file written by the same model and decoding settings (its records' ``"producer"``)."""
    for number, record in enumerate(records, start=1):
        found = record.get("producer")
        if found is None:
            raise OutputPathError(
                f'{path}: record {number} does not say which model wrote it (no "producer"); '
                "--resume continues only files written by this version: choose another --output or --overwrite"
            )
        if found != producer:
            differ = sorted(k for k in {*found, *producer} if found.get(k) != producer.get(k))
            raise OutputPathError(
                f"{path}: record {number} was written with another {', '.join(differ)} "
                f"({', '.join(f'{k}={found.get(k)!r}' for k in differ)}; now "
                f"{', '.join(f'{k}={producer.get(k)!r}' for k in differ)}); resuming would mix two runs: "
                "choose another --output, or --overwrite"
            )


class JsonlWriter:
    """Append one JSON record per line, flushed at once (``with JsonlWriter(path) as write: write(record)``).

    ``append`` continues an existing file; ``replace`` writes a temporary file beside it that is renamed over it at
    the end (also after a failure, if it holds a record): the earlier file is replaced whole, never cut in place.
    A ``<path>.lock`` file refuses a second writer while one is at work."""

    def __init__(self, path: str | os.PathLike, append: bool = False, replace: bool = False) -> None:
        self.path = Path(path)
        self.append = append
        self.replace = replace and not append
        self.lock = self.path.with_name(self.path.name + ".lock")
        self.target = self.path.with_name(f".{self.path.name}.partial") if self.replace else self.path
        self.handle: TextIO | None = None
        self.count = 0

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise OutputPathError(
                f"{self.path}: another run is writing it ({self.lock} exists); wait for it, "
                "or remove the lock file if no run is left"
            ) from None
        try:
            self.handle = open(self.target, "a" if self.append else "w", encoding="utf-8")
        except OSError:
            self.lock.unlink(missing_ok=True)
            raise
        return self.write

    def write(self, record: dict[str, Any]) -> None:
        assert self.handle is not None, "JsonlWriter: use it as a context manager"
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        self.count += 1

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        if self.handle is None:
            return
        if self.replace:
            os.fsync(self.handle.fileno())
        self.handle.close()
        if self.replace and (exc_type is None or self.count):
            os.replace(self.target, self.path)
        elif self.replace:
            self.target.unlink(missing_ok=True)  # nothing new: the earlier file stays as it was
        self.lock.unlink(missing_ok=True)


__all__ = [
    "JsonlWriter",
    "OutputPathError",
    "check_same_producer",
    "model_fingerprint",
    "check_new_output_dir",
    "check_not_an_input",
    "check_output_dir",
    "check_output_file",
    "read_jsonl_records",
    "replaced_dir",
]
