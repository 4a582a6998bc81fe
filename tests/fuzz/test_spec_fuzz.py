"""Fuzz the spec loader: random mutations of a valid ``tidecast.yaml`` (wrong types, unknown and deleted
keys, YAML garbage, huge numbers, NaN/inf, bad durations, bad cron, bad time zones, non-UTF-8 bytes,
BOMs, tabs, empty files).

Property: :func:`tidecast.spec.load_spec` either returns a Spec that holds up (finite numbers, valid cron
and time zones, durations that fit the frequency, a stable fingerprint) or raises a
:class:`~tidecast.errors.SpecError` whose message is one line that starts with the file (and, for a
value problem, its line and field). Any other exception fails the test. A sample also goes through
the real command line: exit code 2, one line on stderr, no traceback.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.conftest import fuzz_settings
from tidecast.errors import SpecError, TidecastError
from tidecast.spec import Spec, load_spec

BASE: dict[str, Any] = {
    "project": "fuzz",
    "data": {
        "source": "data/power.csv",
        "time_column": "timestamp",
        "target_column": "power_kw",
        "frequency": "1h",
        "timezone": "Europe/Paris",
        "exogenous": [{"name": "temperature", "known_in_future": True}],
    },
    "target": {"transform": "none"},
    "clean": {
        "duplicates": "mean",
        "gaps": {"method": "interpolate", "max_gap": "6h"},
        "outliers": {"method": "hampel", "action": "clip", "threshold": 5, "window": "6h"},
    },
    "features": {
        "lags": [1, 2, 24],
        "rolling": [{"window": "6h", "stats": ["mean", "std"]}],
        "calendar": ["hour", "weekday", "holiday"],
        "holidays_country": "FR",
        "fourier": [{"period": "7d", "order": 2}],
    },
    "forecast": {"input_window": "24h", "horizon": "24h", "quantiles": [0.1, 0.9]},
    "backtest": {"folds": 2, "window": "expanding"},
    "selection": {"metric": "mase"},
    "models": [
        {"name": "naive", "kind": "naive"},
        {"name": "seasonal_naive", "kind": "seasonal_naive", "params": {"season_length": "1d"}},
        {"name": "lightgbm", "kind": "lightgbm", "params": {"n_estimators": 30, "learning_rate": {"low": 0.01, "high": 0.3, "log": True}},
         "search": {"trials": 3}},
    ],
    "registry": {"model_name": "fuzz-model", "gate": {"max_metric": 2.0, "min_improvement": 0.05}},
    "serving": {"port": 8000, "poll_interval": 30, "max_body_bytes": 100000},
    "monitoring": {"data_drift": {"window": "1d", "psi": 0.2}, "retrain_cooldown": "7d"},
    "schedule": {"train": "0 2 * * *", "monitor": "*/15 * * * *", "timezone": "Europe/Paris"},
    "envs": {"dev": {"registry": {"model_name": "fuzz-dev"}}},
}
BASE_TEXT = yaml.safe_dump(BASE, sort_keys=False)

# values that are wrong somewhere (or everywhere): types, extremes, bad durations/cron/zones, YAML-ish text
NASTY_TEXT = [
    "", " ", "\t", "24x", "-5h", "0h", "0", "1.5h", "1e400h", "99999999999999999999d", "5 min", "h", "NaN", ".inf",
    "-.inf", "* * *", "61 * * * *", "0 25 * * *", "*/0 * * * *", "Mars/Olympus", "../../etc/passwd", "null",
    "!!python/object:os.system", "{a: 1", "[1, 2", "é", "\x00", "\ufeff", "2w", "7m", "1000000000000000000h",
    "sqlite:///x.db", "http://[::1", "%", "&anchor", "*alias",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**19, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324]),
    st.sampled_from(NASTY_TEXT),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path (and list index) below the root of a parsed spec."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _at(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


PATHS = list(_paths(BASE))
MAPPINGS = [(), *(p for p in PATHS if isinstance(_at(BASE, p), dict))]


def _typo(key: str, how: int) -> str:
    if len(key) < 2:
        return key + "x"
    i = how % len(key)
    return [key[:i] + key[i + 1 :], key[:i] + key[i] + key[i:], key.upper(), key + "s"][how % 4]


@st.composite
def mutated_trees(draw: st.DrawFn) -> dict[str, Any]:
    """The valid spec with 1-3 structural mutations (set a value, delete a key, add an unknown one, a typo)."""
    tree = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "set", "set", "delete", "unknown", "typo"]))
        if op == "unknown":
            where = draw(st.sampled_from(MAPPINGS))
            key = draw(st.one_of(st.sampled_from(["horizn", "sourc", "extra", "modles", "frequncy"]), st.text(min_size=1, max_size=8)))
            try:
                parent = _at(tree, where)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed or replaced this branch
            if not isinstance(parent, dict):
                continue
            parent[key] = draw(values)
        else:
            path = draw(st.sampled_from(PATHS))
            try:
                parent = _at(tree, path[:-1])
                parent[path[-1]]
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed or replaced this branch
            if op == "set":
                parent[path[-1]] = draw(values)
            elif op == "delete":
                del parent[path[-1]]
            elif isinstance(path[-1], str):
                parent[_typo(path[-1], draw(st.integers(0, 7)))] = parent.pop(path[-1])
    return tree


TEXT_INSERTS = ["\t", ":", ": ", "{", "}", "[", "]", "- ", "&a ", "*a", "!!binary ", "!!python/name:os.system ", "%YAML 1.1\n",
                "---\n", "...\n", "\ufeff", "#", '"', "'", "\\", "\n  ", "? ", "|", ">", "@", "`", "\x85", "\x00"]


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """The valid spec's text damaged at the text or byte level (or replaced outright)."""
    kind = draw(st.sampled_from(["insert", "delete", "tabs", "whole", "encode", "bytes", "bom"]))
    text = BASE_TEXT
    if kind == "insert":
        pos = draw(st.integers(0, len(text)))
        text = text[:pos] + draw(st.one_of(st.sampled_from(TEXT_INSERTS), st.text(max_size=5))) + text[pos:]
    elif kind == "delete":
        start = draw(st.integers(0, len(text) - 1))
        text = text[:start] + text[start + draw(st.integers(1, 40)) :]
    elif kind == "tabs":
        lines = text.splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i].replace("  ", "\t", 1) if lines[i].startswith("  ") else "\t" + lines[i]
        text = "".join(lines)
    elif kind == "whole":
        text = draw(st.sampled_from([
            "", " \n\n", "\ufeff", "---\n", "---\n...\n---\n", "42\n", "- a\n- b\n", "project\n", "null\n", "~\n",
            "[unclosed\n", "{a: 1, a: 2}\n", "a: &x [*x]\n", "project: x\nproject: y\n", "? [a, b]\n: c\n",
            BASE_TEXT + "---\nproject: second\n", "a: !!python/object/apply:os.system [ls]\n",
        ]))
    elif kind == "bom":
        return b"\xef\xbb\xbf" + text.encode() if draw(st.booleans()) else b"\xef\xbb\xbf\xef\xbb\xbf" + text.encode()
    elif kind == "encode":
        text = text.replace("project: fuzz", "project: fuzz\n# caf\u00e9 \u00fcber")
        return text.encode(draw(st.sampled_from(["latin-1", "utf-16", "utf-16-le", "utf-32", "cp1252"])))
    else:
        blob = draw(st.binary(max_size=64))
        pos = draw(st.integers(0, len(text)))
        return text[:pos].encode() + blob + text[pos:].encode()
    return text.encode("utf-8", errors="surrogatepass")


# ---------------------------------------------------------------------------------- checks
FLOAT_SKIP = {"params", "envs", "read_options"}  # free-form: passed to models/readers as written


def _floats(node: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in FLOAT_SKIP:
                yield from _floats(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _floats(value, f"{path}[{index}]")
    elif isinstance(node, float):
        yield path, node


def check_loaded(spec: Spec) -> None:
    """A spec load_spec accepted must hold up: nothing silently wrong in it."""
    from tidecast.cron import parse_cron
    from tidecast.durations import to_steps

    dumped = spec.model_dump(mode="python")
    bad = [(p, v) for p, v in _floats(dumped) if not math.isfinite(v)]
    assert not bad, f"load_spec accepted non-finite numbers: {bad}"
    window, horizon = spec.forecast_steps()
    assert window >= 1 and horizon >= 1
    assert all(0 < q < 1 for q in spec.forecast.quantiles)
    names = [m.name for m in spec.models]
    assert len(names) == len(set(names))
    for field in ("train", "monitor", "report"):
        expr = getattr(spec.schedule, field)
        if expr is not None:
            parse_cron(expr, field=f"schedule.{field}")  # a SpecError here: load_spec let a bad cron through
    from zoneinfo import ZoneInfo

    ZoneInfo(spec.schedule.timezone)
    if spec.data.timezone:
        ZoneInfo(spec.data.timezone)
    freq = spec.data.frequency
    for name, value in [
        ("clean.gaps.max_gap", spec.clean.gaps.max_gap), ("clean.outliers.window", spec.clean.outliers.window),
        ("backtest.step", spec.backtest.step), ("backtest.gap", spec.backtest.gap),
    ]:
        if value is not None:
            to_steps(value, freq, field=name)
    assert re.fullmatch(r"[0-9a-f]{16}", spec.fingerprint())
    Spec.model_validate(spec.model_dump())  # what it dumps, it reads back


def check_error(exc: BaseException, path: Path) -> str:
    """A refused spec: a SpecError, one line, starting with the file."""
    assert isinstance(exc, SpecError), f"{type(exc).__name__} instead of a SpecError: {exc}"
    message = str(exc)
    assert message.strip(), "an empty error message"
    assert "\n" not in message and "\r" not in message, f"a multi-line error message: {message!r}"
    assert "Traceback" not in message
    assert message.startswith(str(path)), f"the message does not name the file: {message!r}"
    return message


def try_load(path: Path) -> tuple[Spec | None, str | None]:
    try:
        spec = load_spec(path, env="")
    except TidecastError as exc:
        return None, check_error(exc, path)
    check_loaded(spec)
    return spec, None


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TIDECAST_ENV", raising=False)
        yield tmp_path_factory.mktemp("spec-fuzz")


def test_the_base_spec_is_valid(spec_dir: Path) -> None:
    path = spec_dir / "tidecast.yaml"
    path.write_text(BASE_TEXT)
    spec, error = try_load(path)
    assert error is None and spec is not None
    assert spec.forecast_steps() == (24, 24)


COUNTS: dict[str, int] = {}


@fuzz_settings(default=100, thorough=3000)
@given(mutated_trees())
@example(copy.deepcopy(BASE) | {"forecast": {"input_window": "24h", "horizon": "99999999999999999999d"}})
@example(copy.deepcopy(BASE) | {"serving": {"poll_interval": math.inf}})
@example(copy.deepcopy(BASE) | {"registry": {"gate": {"max_metric": math.nan}}})
@example(copy.deepcopy(BASE) | {"schedule": {"train": "61 * * * *"}})
@example(copy.deepcopy(BASE) | {"schedule": {"timezone": "Mars/Olympus"}})
def test_mutated_spec_is_valid_or_one_clear_error(spec_dir: Path, tree: dict[str, Any]) -> None:
    path = spec_dir / "tidecast.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
    _, message = try_load(path)
    COUNTS["tree"] = COUNTS.get("tree", 0) + 1
    if message is not None:
        # a value problem names the line and the field: "<file>:<line>: <field>: <problem>"
        rest = message[len(str(path)) :]
        assert re.match(r"^:\d+: .+?: \S", rest) or re.match(r"^: [\w.]+: \S", rest), message


@fuzz_settings(default=100, thorough=3000)
@given(mutated_bytes())
@example(b"")
@example(b"\xef\xbb\xbf")
@example(b"\xef\xbb\xbf" + BASE_TEXT.encode())
@example(BASE_TEXT.replace("project: fuzz", "project: caf\u00e9").encode("latin-1"))
@example(BASE_TEXT.encode("utf-16"))
@example(b"\x00\xff\xfe garbage \x00\x01" * 20)
def test_damaged_spec_text_is_valid_or_one_clear_error(spec_dir: Path, blob: bytes) -> None:
    path = spec_dir / "tidecast.yaml"
    path.write_bytes(blob)
    try_load(path)
    COUNTS["bytes"] = COUNTS.get("bytes", 0) + 1


# ------------------------------------------------------------------------------ the CLI
def _cli(*args: str) -> tuple[int, str, str]:
    """``tidecast ARGS`` in this process through the real entry point (``main``): (exit code, stdout, stderr)."""
    from tidecast import cli

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["tidecast", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        sys.argv = argv
        cli._STATE.update(debug=False, env=None)
    return code, out.getvalue(), err.getvalue()


CLI_CASES = [
    b"",
    b"\xef\xbb\xbf",
    BASE_TEXT.encode("utf-16"),
    b"\x00\xff\xfe garbage",
    BASE_TEXT.replace("horizon: 24h", "horizn: 24h").encode(),
    BASE_TEXT.replace("folds: 2", "folds: many").encode(),
    BASE_TEXT.replace("frequency: 1h", "frequency: 1e400h").encode(),
    BASE_TEXT.replace("  poll_interval: 30", "  poll_interval: .inf").encode(),
    BASE_TEXT.replace("train: 0 2 * * *", "train: 0 25 * * *").encode(),
    (BASE_TEXT + "\tbroken: [\n").encode(),
    b"- just\n- a list\n",
]


@pytest.mark.parametrize("blob", CLI_CASES, ids=[f"case{i}" for i in range(len(CLI_CASES))])
def test_cli_answers_a_bad_spec_with_one_line(spec_dir: Path, blob: bytes) -> None:
    path = spec_dir / "cli" / "tidecast.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(blob)
    code, out, err = _cli("status", "--spec", str(path))
    assert code == 2, (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    assert str(path) in lines[0]


@fuzz_settings(default=20, thorough=400)
@given(st.one_of(mutated_bytes(), mutated_trees().map(lambda t: yaml.safe_dump(t, allow_unicode=True).encode())))
def test_cli_on_fuzzed_specs_never_shows_a_traceback(spec_dir: Path, blob: bytes) -> None:
    path = spec_dir / "cli-fuzz" / "tidecast.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(blob)
    try:
        load_spec(path, env="")
        loads = True
    except SpecError:
        loads = False
    code, out, err = _cli("schedule", "--print-cron", "--spec", str(path))
    assert "Traceback" not in err + out and "internal error" not in err, err
    if loads:  # what load_spec accepts, the scheduler can lay out
        assert code == 0, err
        assert "crontab" in out
    else:
        assert code == 2, (code, err)
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err


@pytest.mark.parametrize("blob", [b"\xff\xfe\x00garbage", BASE_TEXT.replace("folds: 2", "folds: [").encode()])
def test_cli_subprocess_bad_spec(spec_dir: Path, blob: bytes) -> None:
    """The installed entry point as a process: exit 2, one line on stderr, no traceback."""
    path = spec_dir / "proc" / "tidecast.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(blob)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("TIDECAST_ENV", None)
    result = subprocess.run(
        [sys.executable, "-m", "tidecast.cli", "status", "--spec", str(path)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0], result.stderr
