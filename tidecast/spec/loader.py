"""Reading ``tidecast.yaml``: the YAML loader that records each key's line, the environment
overrides (``envs:``), and the rendering of validation problems as one :class:`SpecError` naming
the file, the line and the field, with a "did you mean" for typos."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tidecast.errors import SpecError, closest
from tidecast.spec.root import Spec

SPEC_FILENAME = "tidecast.yaml"


# ------------------------------------------------------------------------------------ loading
class _LineLoader(yaml.SafeLoader):
    """A safe YAML loader that also records the line of every mapping key."""


def _compose_lines(
    node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], source: str,
    seen: set[int] | None = None, stack: set[int] | None = None,
) -> None:
    """Record the line of every key below ``node``. A node reached again through an alias is walked
    once (aliases cannot blow the walk up); an alias inside its own anchor (a cycle) is an error."""
    seen = set() if seen is None else seen
    stack = set() if stack is None else stack
    if id(node) in stack:
        raise SpecError(f"{source}:{node.start_mark.line + 1}: not valid here: a YAML alias refers to its own anchor")
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:
        return
    seen.add(id(node))
    stack.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # a list or mapping as a key: the loader refuses it
                _compose_lines(key_node, (*path, "?"), lines, source, seen, stack)
                continue
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _compose_lines(value_node, (*path, key), lines, source, seen, stack)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _compose_lines(item, (*path, index), lines, source, seen, stack)
    stack.discard(id(node))


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _read_yaml(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    loader: _LineLoader | None = None
    lines: dict[tuple[Any, ...], int] = {}
    data = None
    try:
        loader = _LineLoader(text)  # checks the characters already
        node = loader.get_single_node()  # what yaml.load does, with the key lines read off the nodes
        if node is not None:
            _compose_lines(node, (), lines, source)  # first: a cyclic alias must not reach the constructor
            data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise SpecError(f"{where}: not valid YAML: {_one_line(exc.problem or exc.context)}") from None
    except yaml.reader.ReaderError as exc:  # a control character or bad byte: no mark, a position
        line = text.count("\n", 0, max(0, exc.position)) + 1
        char = exc.character
        code = char[0] if isinstance(char, bytes) else ord(char) if isinstance(char, str) else int(char)
        raise SpecError(f"{source}:{line}: not valid YAML: unacceptable character #x{code:04x}: {_one_line(exc.reason)}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {_one_line(exc)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed at ``loc`` (the location of an unknown key), for "did you mean"."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [name for name, info in current.model_fields.items() if not info.exclude]  # not root, source_file
    return []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The first pydantic model inside an annotation such as ``list[X] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _format_loc(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            name = None
            if isinstance(node, list) and part < len(node) and isinstance(node[part], dict):
                name = node[part].get("name")
            parts.append(f"[{part}]" if name is None else f"[{name}]")
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            # pydantic inserts union-member tags such as 'RangeParam' or 'list[...]' into locs
            if isinstance(node, dict) and part not in node and not str(part).islower():
                continue
            name = str(part) if str(part).isprintable() else repr(str(part))  # a key with a newline: one line
            parts.append(("." if parts else "") + name)
            node = node.get(part) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop pydantic's union-member tags from a location, keeping only real keys and indexes."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            out.append(part)
            node = node[part] if isinstance(node, list) and part < len(node) else None
        elif isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) or node is None:
            out.append(part)
            node = None
    return tuple(out)


def _spec_error(exc: ValidationError, data: Any, lines: dict[tuple[Any, ...], int], source: str) -> SpecError:
    messages: list[str] = []
    seen: set[str] = set()
    # unknown keys (typos) first: a typo usually also causes the "missing" error of the real key
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    for err in errors:
        loc = _clean_loc(tuple(err["loc"]), data)
        text = err["msg"].removeprefix("Value error, ")
        named = re.match(r"^([a-z_]+(?:\.[a-z_]+)+): (.*)$", text)
        if not loc and named:  # a model-level check that names its own field
            loc = tuple(named.group(1).split("."))
            err = {**err, "msg": named.group(2)}
        field = _format_loc(loc, data)
        line = None
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        where = f"{source}:{line}" if line else source
        if err["type"] == "extra_forbidden":
            key = str(loc[-1]) if loc else ""
            choices = _allowed_keys(Spec, loc)
            close = closest(key, choices)
            hint = f" (did you mean '{close}'?)" if close else (
                f" (allowed: {', '.join(choices)})" if choices else ""
            )
            msg = f"{where}: {field}: unknown key{hint}"
        elif err["type"] == "missing":
            msg = f"{where}: {field}: required field is missing"
        else:
            text = err["msg"].removeprefix("Value error, ")
            msg = f"{where}: {field}: {text}"
        if msg not in seen:
            seen.add(msg)
            messages.append(msg)
    # union members each report their own failure; keep the first few, most specific first
    first = messages[0]
    more = f" (and {len(messages) - 1} more problem{'s' if len(messages) > 2 else ''})" if len(messages) > 1 else ""
    return SpecError(first + more)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def find_spec(path: str | os.PathLike[str] | None = None) -> Path:
    """The spec file: ``path`` itself, ``path/tidecast.yaml``, or ``./tidecast.yaml``."""
    candidate = Path(path) if path is not None else Path.cwd()
    if candidate.is_dir():
        candidate = candidate / SPEC_FILENAME
    if not candidate.exists():
        raise SpecError(f"{candidate}: no such spec file (run 'tidecast init NAME' to start a project)")
    return candidate


def parse_spec(
    data: Any, *, root: Path, source: str = SPEC_FILENAME, lines: dict[tuple[Any, ...], int] | None = None,
    env: str | None = None,
) -> Spec:
    """Validate an already-parsed spec mapping (used by :func:`load_spec` and by tests)."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the spec must be a mapping of keys (project, data, forecast, ...)")
    env = env if env is not None else os.environ.get("TIDECAST_ENV") or None
    if env:
        envs = data.get("envs") or {}
        if env not in envs:
            known = ", ".join(sorted(envs)) or "none defined"
            raise SpecError(f"{source}: envs: no environment {env!r} (known: {known})")
        data = _deep_merge({k: v for k, v in data.items() if k != "envs"}, envs[env])
        data["envs"] = envs
    for private in ("root", "source_file"):  # fields of the loaded Spec, set from where it was read
        if private in data:
            line = lines.get((private,))
            where = f"{source}:{line}" if line else source
            raise SpecError(f"{where}: {private}: unknown key (allowed: {', '.join(_allowed_keys(Spec, (private,)))})")
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, data, lines, source) from None
    except SpecError as exc:  # raised by duration parsing inside validators
        raise SpecError(f"{source}: {exc.message}") from None
    spec.root = root
    spec.source_file = Path(source)
    spec.data.source = spec.resolve_path(spec.data.source)
    return spec


def load_spec(path: str | os.PathLike[str] | None = None, *, env: str | None = None) -> Spec:
    """Read, validate and resolve a ``tidecast.yaml``.

    ``env`` (or ``TIDECAST_ENV``) picks an entry of ``envs:`` whose keys override the spec's.
    """
    file = find_spec(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{file}: cannot read the spec: {exc}") from None
    data, lines = _read_yaml(text, str(file))
    return parse_spec(data, root=file.parent.resolve(), source=str(file), lines=lines, env=env)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``tidecast.yaml`` (for editor completion)."""
    schema = Spec.model_json_schema()
    schema["title"] = "tidecast.yaml"
    for private in ("root", "source_file"):
        schema.get("properties", {}).pop(private, None)
    return schema
