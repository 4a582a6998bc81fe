"""Content hashes for cache keys: of JSON-able values, of a step's code, of a file.

Every hash is a hex SHA-256 digest; :func:`stable_hash` and :func:`code_hash` keep its first 16
characters (64 bits: plenty to tell a project's cache entries apart, short enough to read).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

_PACKAGE_ROOT = Path(__file__).parent.parent  # the tidecast package folder

HASH_LENGTH = 16


def _canonical(obj: Any) -> Any:
    """JSON stand-ins for values ``json`` cannot encode, chosen to be stable across runs."""
    if isinstance(obj, set | frozenset):
        return sorted(_canonical_json(item) for item in obj)
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if hasattr(obj, "model_dump") and callable(obj.model_dump):  # pydantic models
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():  # numpy scalars
        return obj.item()
    if isinstance(obj, bytes):
        return obj.hex()
    return str(obj)


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_canonical, separators=(",", ":"), ensure_ascii=False)


def stable_hash(obj: Any, length: int = HASH_LENGTH) -> str:
    """SHA-256 of ``obj`` as canonical JSON (sorted keys, compact), as ``length`` hex characters.

    Values JSON cannot encode are hashed through a stable stand-in: sets are sorted, paths become
    POSIX strings, pydantic models and dataclasses their fields, anything else ``str(value)``.

    >>> stable_hash({"b": 1, "a": [1, 2]}) == stable_hash({"a": [1, 2], "b": 1})
    True
    """
    return hashlib.sha256(_canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def function_source(fn: Callable[..., Any]) -> str:
    """The dedented source of ``fn`` (decorators included), or a description of its bytecode
    when the source is not available (functions made with ``exec`` or in a bare REPL)."""
    target = inspect.unwrap(fn)
    try:
        return textwrap.dedent(inspect.getsource(target))
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        if code is None:
            return f"{type(target).__module__}.{type(target).__qualname__}"
        consts = [c for c in code.co_consts if not inspect.iscode(c)]
        return f"{code.co_name}\n{code.co_code.hex()}\n{consts!r}\n{code.co_names!r}"


def code_hash(fn: Callable[..., Any], version: str = "1") -> str:
    """The version of a step's code: SHA-256 of its dedented source plus the author's ``version``.

    Only the function's own text counts; bump ``version`` when a helper it calls changes.
    """
    payload = function_source(fn) + "\0version=" + str(version)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """The full hex SHA-256 of a file's bytes, read in chunks (for data fingerprints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def source_hash(*parts: str, length: int = 16) -> str:
    """A hash of tidecast's own source files under ``parts`` (sub-packages or modules of ``tidecast``).

    >>> len(source_hash("data"))
    16
    """
    root = _PACKAGE_ROOT
    digest = hashlib.sha256()
    for part in parts:
        target = root / part
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for file in files:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:length]
