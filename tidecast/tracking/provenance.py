"""Provenance of a training: the git commit of the project, the installed versions of the main
libraries, and the spec as validated with its passwords redacted (:func:`redact`: credentials never
reach MLflow). Recorded by :mod:`tidecast.tracking.runs`, checked by :mod:`tidecast.tracking.reproduce`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidecast.spec import Spec

MAIN_PACKAGES = (
    "tidecast",
    "mlflow",
    "pandas",
    "numpy",
    "pyarrow",
    "pydantic",
    "scikit-learn",
    "statsforecast",
    "mlforecast",
    "utilsforecast",
    "lightgbm",
    "optuna",
    "holidays",
    "joblib",
    "cloudpickle",
    "torch",
)


def git_commit(path: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, work tree dirty?) when ``path`` is inside a git work tree; (None, None) otherwise."""
    try:
        head = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if head.returncode != 0:
            return None, None
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return head.stdout.strip() or None, bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def installed_versions(packages: Iterable[str] = MAIN_PACKAGES) -> dict[str, str]:
    """``name -> version`` of the installed main dependencies (absent ones are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def redact(source: str) -> str:
    """A data source URL without its password (``user:***@host``): credentials never reach MLflow."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", source)


def resolved_spec_yaml(spec: Spec) -> str:
    """The spec as validated (environment overrides applied, paths resolved), passwords redacted."""
    import yaml

    data = spec.model_dump(mode="json", exclude={"envs"})
    data["data"]["source"] = redact(data["data"]["source"])
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


__all__ = ["MAIN_PACKAGES", "git_commit", "installed_versions", "redact", "resolved_spec_yaml"]
