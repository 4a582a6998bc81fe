"""The step graph: built from parameter names, validated, drawn; and the hashing helpers."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from rich.console import Console

from tidecast.commands.pipeline import render_tree
from tidecast.errors import PipelineError
from tidecast.pipeline import Pipeline, StepPlan, code_hash, file_sha256, stable_hash, step


@step(spec=("data",))
def ingest(spec):
    return [1, 2, 3]


@step(spec=("clean",))
def clean(ingest, spec):
    return [x * 2 for x in ingest]


@step()
def features(clean, ctx):
    return [x + 1 for x in clean]


@step
def backtest(features, clean):
    return {"n": len(features) + len(clean)}


@step()
def report(backtest):
    return str(backtest)


def test_graph_comes_from_parameter_names() -> None:
    p = Pipeline([report, backtest, features, clean, ingest])  # any order
    assert p.order() == ["ingest", "clean", "features", "backtest", "report"]
    assert p.edges() == [
        ("ingest", "clean"),
        ("clean", "features"),
        ("features", "backtest"),
        ("clean", "backtest"),
        ("backtest", "report"),
    ]
    assert p.inputs("backtest") == ["features", "clean"]
    assert p.upstream("backtest") == ["ingest", "clean", "features"]
    assert p.downstream("clean") == ["features", "backtest", "report"]
    assert p.downstream("report") == []
    assert p.roots() == ["ingest"] and p.leaves() == ["report"]
    assert p["features"].params == ("clean", "ctx") and p["features"].inputs == ("clean",)
    assert p["ingest"].spec_sections == ("data",)
    assert "clean" in p and "nope" not in p and len(p) == 5


def test_subgraph_keeps_a_step_and_its_upstream() -> None:
    p = Pipeline([ingest, clean, features, backtest, report])
    assert p.subgraph("features").order() == ["ingest", "clean", "features"]
    assert p.subgraph(None) is p
    with pytest.raises(PipelineError, match=r"no step named 'featurs'.*did you mean 'features'"):
        p.subgraph("featurs")


def test_independent_steps_keep_the_given_order() -> None:
    def a():
        return 1

    def b():
        return 2

    def c(a, b):
        return a + b

    assert Pipeline([b, a, c]).order() == ["b", "a", "c"]
    assert Pipeline([a, b, c]).order() == ["a", "b", "c"]


def test_decorated_function_is_still_a_function() -> None:
    assert clean([1], spec=None) == [2]
    assert backtest([1], [2]) == {"n": 2}


def test_unknown_input_names_step_and_parameter() -> None:
    def clen_typo(ingst):
        return ingst

    with pytest.raises(PipelineError, match=r"step 'clen_typo': parameter 'ingst' names no step.*did you mean 'ingest'"):
        Pipeline([ingest, clen_typo])


def test_duplicate_names_are_an_error_but_the_same_function_twice_is_not() -> None:
    def make():
        @step(spec=("data",))
        def ingest(spec):
            return []

        return ingest

    with pytest.raises(PipelineError, match="two steps are named 'ingest'"):
        Pipeline([ingest, make()])
    assert Pipeline([ingest, ingest]).order() == ["ingest"]


def test_cycles_are_reported_with_their_path() -> None:
    def a(c):
        return c

    def b(a):
        return a

    def c(b):
        return b

    def d(a):
        return a

    with pytest.raises(PipelineError, match=r"cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        Pipeline([a, b, c, d])

    def selfish(selfish):
        return selfish

    with pytest.raises(PipelineError, match="cycle: selfish -> selfish"):
        Pipeline([selfish])


def test_invalid_step_definitions() -> None:
    def spec():
        return 1

    with pytest.raises(PipelineError, match="reserved"):
        Pipeline([spec])

    def varargs(*things):
        return things

    with pytest.raises(PipelineError, match=r"step 'varargs': parameter 'things' is variadic"):
        Pipeline([varargs])

    with pytest.raises(PipelineError, match="takes 'spec' but declares no spec sections"):

        @step()
        def reads_spec(spec):
            return spec

    with pytest.raises(PipelineError, match="kind='pickle' is not one of"):

        @step(kind="pickle")
        def odd():
            return 1

    @step(cache=False)
    def uncached_reads_spec(spec):  # allowed: it runs every time anyway
        return spec

    @step(spec="data")  # a single string is one section
    def one_section(spec):
        return spec

    assert Pipeline([uncached_reads_spec, one_section])["one_section"].spec_sections == ("data",)


def test_code_hash_follows_source_and_version() -> None:
    def first():
        return 1

    def second():
        return 2

    def make():
        def first():
            return 1

        return first

    assert code_hash(first, "1") != code_hash(second, "1")
    assert code_hash(first, "1") != code_hash(first, "2")
    assert code_hash(first, "1") == code_hash(make(), "1")  # same text, same hash

    @step(version="2")
    def bumped():
        return 1

    @step(version="3")
    def bumped2():
        return 1

    assert Pipeline([bumped])["bumped"].code != Pipeline([bumped2])["bumped2"].code


def test_code_hash_works_without_source() -> None:
    namespace: dict[str, object] = {}
    exec("def made():\n    return 41\n", namespace)
    exec("def other():\n    return 42\n", namespace)
    assert code_hash(namespace["made"]) != code_hash(namespace["other"])  # type: ignore[arg-type]


def test_stable_hash_and_file_hash(tmp_path: Path) -> None:
    assert stable_hash({"b": 1, "a": [1, 2]}) == stable_hash({"a": [1, 2], "b": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert stable_hash({3, 1, 2}) == stable_hash({2, 3, 1})
    assert stable_hash(Path("a/b")) == stable_hash("a/b")
    assert len(stable_hash(None)) == 16
    data = bytes(range(256)) * 10_000  # several chunks
    file = tmp_path / "blob.bin"
    file.write_bytes(data)
    assert file_sha256(file, chunk_size=4096) == hashlib.sha256(data).hexdigest()


def _text(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_render_tree_draws_each_step_once() -> None:
    p = Pipeline([ingest, clean, features, backtest, report])
    text = _text(render_tree(p))
    for name in p:
        assert text.count(name) >= 1
    assert text.count("report") == 1
    assert "← clean" in text  # backtest hangs under features and also needs clean
    lines = text.splitlines()
    assert lines[0].strip() == "pipeline"
    depth = {n: next(line.index(n) for line in lines if n in line and "←" not in line.split(n)[0]) for n in p}
    assert depth["ingest"] < depth["clean"] < depth["features"] < depth["backtest"] < depth["report"]


def test_render_tree_marks_statuses() -> None:
    p = Pipeline([ingest, clean, features])
    plans = [
        StepPlan("ingest", "k1", "fresh", "up to date"),
        StepPlan("clean", "k2", "stale", "spec section 'clean' changed"),
        StepPlan("features", "k3", "missing", "never run"),
    ]
    text = _text(render_tree(p, plans))
    assert "✓ ingest" in text
    assert "↻ clean" in text and "spec section 'clean' changed" in text
    assert "○ features" in text and "never run" in text
    assert "✓ ingest" in _text(render_tree(p, {"ingest": "fresh"}))
