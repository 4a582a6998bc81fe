"""Import paths from the spec (``package.module:attribute``) resolved with importlib, never eval.

A candidate whose ``kind`` contains ``:`` is a plugin: see :func:`tidecast.models.registry.build_forecaster`
and ``examples/plugins/README.md`` for the contract.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
from pathlib import Path
from typing import Any

from tidecast.errors import PluginError

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
            close = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise PluginError(f"{what} '{path}': '{walked}' has no attribute '{part}'{hint}")
        obj = getattr(obj, part)
        walked = f"{walked}.{part}" if walked != module_name else f"{module_name}:{part}"
    if require_callable and not callable(obj):
        raise PluginError(f"{what} '{path}': {type(obj).__name__} object is not callable")
    return obj
