"""Import paths from the spec (``package.module:attribute``) resolved with importlib, never eval.

A candidate whose ``kind`` contains ``:`` is a plugin: see :func:`tidecast.models.registry.build_forecaster`
and ``examples/plugins/README.md`` for the contract.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tidecast.errors import PluginError, did_you_mean

_PATH_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def add_search_path(folder: str | Path | None) -> None:
    """Put ``folder`` (a project root) first on ``sys.path`` so its modules import.

    This is permanent for the process, on purpose: models built from a plugin are pickled by
    reference to the plugin's module, so whatever unpickles them (backtest workers, serving)
    needs the same folder importable; :func:`add_search_path` is idempotent.
    """
    if folder is None:
        return
    text = str(Path(folder).resolve())
    if text not in sys.path:
        sys.path.insert(0, text)
        importlib.invalidate_caches()


def load_object(path: str, *, what: str = "plugin", require_callable: bool = True) -> Any:
    """The object at ``path`` = ``package.module:attr`` (``attr`` may be dotted: ``module:Class.method``).

    Raises :class:`~tidecast.errors.PluginError` naming ``what`` and ``path`` when the path is
    malformed, the module cannot be imported (not found, or failing on import), the attribute is
    missing, or (with ``require_callable``) the object is not callable.
    """
    text = str(path).strip()
    if not _PATH_RE.match(text):
        raise PluginError(
            f"{what} '{path}': not an import path; write 'package.module:function' (e.g. 'my_models:build')"
        )
    module_name, attr = text.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if missing == module_name or module_name.startswith(missing + "."):
            raise PluginError(
                f"{what} '{path}': module '{module_name}' not found "
                f"(is it installed, or in the project folder next to tidecast.yaml?)"
            ) from exc
        raise PluginError(
            f"{what} '{path}': importing module '{module_name}' failed: it needs module '{missing}', which is not installed"
        ) from exc
    except Exception as exc:
        raise PluginError(
            f"{what} '{path}': importing module '{module_name}' failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    walked = module_name
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            hint = did_you_mean(part, names)
            raise PluginError(f"{what} '{path}': '{walked}' has no attribute '{part}'{hint}")
        obj = getattr(obj, part)
        walked = f"{walked}.{part}" if walked != module_name else f"{module_name}:{part}"
    if require_callable and not callable(obj):
        raise PluginError(f"{what} '{path}': {type(obj).__name__} object is not callable")
    return obj


# ------------------------------------------------------------------- code they run (cache keys)
def _module_name(path: str) -> str:
    """The module of an import path: ``pkg.mod:attr`` → ``pkg.mod``; ``pkg.mod.Attr`` → ``pkg.mod``."""
    text = str(path).strip()
    return text.split(":", 1)[0] if ":" in text else text.rpartition(".")[0] or text


def _find_local(name: str, folders: Sequence[Path]) -> list[tuple[str, Path]] | None:
    """``(module, file)`` for each file importing ``name`` executes, if it resolves under one of
    ``folders`` (its packages' ``__init__.py`` files, then the module itself), else None."""
    parts = name.split(".")
    for folder in folders:
        files: list[tuple[str, Path]] = []
        for depth in range(1, len(parts)):
            init = folder.joinpath(*parts[:depth], "__init__.py")
            if init.is_file():
                files.append((".".join(parts[:depth]), init))
            elif not folder.joinpath(*parts[:depth]).is_dir():
                break
        else:
            module = folder.joinpath(*parts[:-1], parts[-1] + ".py")
            package = folder.joinpath(*parts, "__init__.py")
            if module.is_file():
                return [*files, (name, module)]
            if package.is_file():
                return [*files, (name, package)]
    return None


def _imports(tree: ast.AST, name: str, is_package: bool) -> list[str]:
    """Every module an ``import`` anywhere in ``tree`` may load (functions' bodies included)."""
    found: list[str] = []
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target:
                found.append(target)
            found.extend(f"{target}.{alias.name}" if target else alias.name for alias in node.names if alias.name != "*")
    return found


def code_dependencies(
    paths: Iterable[tuple[str, str]], folders: Sequence[str | Path], root: str | Path
) -> tuple[dict[str, str], set[str]]:
    """What the spec's import paths run, found without importing anything.

    ``paths``: ``(what, "package.module:function")`` pairs; ``folders``: where project modules are
    searched (the project folder, then ``plugin_paths``). Returns the project-local files those
    modules and their project-local imports resolve to (``plugin:<path relative to root>`` → a
    SHA-256 of the content; every ``import`` in them is walked with :mod:`ast`) and the top-level
    names of the other, non-standard-library modules they import (or that hold the path itself).

    Raises :class:`~tidecast.errors.PluginError` for a module found neither in the project nor
    installed, and for a project file that cannot be read or parsed.
    """
    import hashlib
    import importlib.util

    base = [Path(f).resolve() for f in folders]
    root_path = Path(root).resolve()
    files: dict[str, str] = {}
    external: set[str] = set()
    seen: set[str] = set()

    def visit(name: str, what: str, path: str, required: bool) -> None:
        if not name or (name in seen and not required):
            return
        seen.add(name)
        local = _find_local(name, base)
        if local is None:
            top = name.split(".", 1)[0]
            if top in sys.stdlib_module_names or top == "__future__":
                return
            if required and importlib.util.find_spec(top) is None:  # a top-level lookup imports nothing
                raise PluginError(
                    f"{what} '{path}': module '{name}' not found "
                    "(is it installed, or in the project folder next to tidecast.yaml?)"
                )
            if required or _find_local(top, base) is None:
                external.add(top)
            return
        for module, file in local:
            label = Path(os.path.relpath(file, root_path)).as_posix()
            if label in files:
                continue
            try:
                source = file.read_bytes()
                tree = ast.parse(source, filename=str(file))
            except SyntaxError as exc:
                raise PluginError(
                    f"{what} '{path}': {label} cannot be parsed: {exc.msg} (line {exc.lineno})"
                ) from None
            except (OSError, ValueError) as exc:
                raise PluginError(f"{what} '{path}': cannot read {label}: {exc}") from None
            files[f"plugin:{label}"] = hashlib.sha256(source).hexdigest()[:16]
            for imported in _imports(tree, module, file.name == "__init__.py"):
                visit(imported, what, path, required=False)

    for what, path in paths:
        visit(_module_name(path), what, path, required=True)
    return dict(sorted(files.items())), external

