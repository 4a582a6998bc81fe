"""The commands of the ``tidecast`` CLI, one module per group (``pipeline``: run/status/dag/schema,
``init``, ``monitoring``, ``reporting``, ``serving``, ``tracking``).

Each module has ``register(app, console)`` adding its commands to the Typer app; :mod:`tidecast.cli`
calls them in that order. What they share (consoles, global options, ``--spec``, loading the spec,
progress bars) is in :mod:`tidecast.commands._common`; no command module imports :mod:`tidecast.cli`.
"""

from __future__ import annotations
