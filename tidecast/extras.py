"""The optional parts of tidecast, and the one line that names the extra a missing one needs.

``make demo`` installs the runtime and the ``neural`` extra (the power example has an MLP);
``make test`` adds every other extra and the test tooling. Code that uses an optional library
imports it through :func:`require`, so a user without it reads which ``pip install`` to run
instead of a ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from tidecast.errors import MissingExtraError

#: top-level module -> the extra of ``pyproject.toml`` that installs it
EXTRA_OF = {
    "torch": "neural",
    "dask": "dask",
    "distributed": "dask",
    "fugue": "dask",
    "fugue_dask": "dask",
    "weasyprint": "report",
    "dash": "dashboard",
}


def install_hint(extra: str) -> str:
    return f"pip install 'tidecast[{extra}]'"


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError`: ``<purpose> needs the 'x' extra: pip install ...``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        missing = (exc.name or "").split(".")[0]
        if missing and missing != top and missing not in EXTRA_OF:
            raise  # the extra is there but one of its own dependencies is broken: a real error
        extra = EXTRA_OF.get(top)
        if extra is None:
            raise MissingExtraError(f"{purpose} needs the Python package '{top}', which is not installed") from None
        raise MissingExtraError(f"{purpose} needs the '{extra}' extra: {install_hint(extra)}") from None


__all__ = ["EXTRA_OF", "install_hint", "require"]
