"""Command groups of the ``tidecast`` CLI that live outside :mod:`tidecast.cli`.

Each module has ``register(app, console)`` adding its commands to the Typer app.
"""

from __future__ import annotations
