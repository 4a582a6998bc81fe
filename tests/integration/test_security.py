"""Security properties of tidecast, checked on the running server and on the source tree.

* the admin token: compared in constant time, read only from the environment variable the spec
  names, and never written anywhere (server output at debug level with the access log, the
  prediction store, the registry), even when a client sends a wrong one;
* the caps: request size (413) and series count (422, on /forecast and /invocations);
* code and pickles: no ``eval``/``exec``, YAML read only with safe loaders, and every unpickling
  call listed with where its bytes come from (a new one fails until it is reviewed and listed);
  a model's MLmodel file cannot point the loader at a pickle outside the version's folder; the
  spec names code only by import path;
* the Docker image runs as a non-root user; ``scripts/audit.sh`` (``make audit``) never fails on a
  network error.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.server_helpers import (
    ServeProcess,
    data_frame,
    free_port,
    series_body,
    server_env,
    train_project,
)
from tidecast.spec import Spec

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tidecast"
TOKEN = "sec-" + secrets.token_urlsafe(24)
WRONG = "wrong-" + secrets.token_urlsafe(24)


def _files() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SOURCE.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` of a call's function (``?`` for parts that are not plain names)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


# ------------------------------------------------------------------------------ the running server
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Iterator[tuple[Spec, ServeProcess]]:
    """A trained project served by ``tidecast --debug serve --access-log`` with the admin token in its environment."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV", "TIDECAST_ADMIN_TOKEN"):
            mp.delenv(var, raising=False)
        spec = train_project(tmp_path_factory.mktemp("security") / "proj", template=mlflow_template)
        log = tmp_path_factory.mktemp("security-log") / "serve.log"
        server = ServeProcess(
            spec.root, free_port(), log, env=server_env(TOKEN), args=["--debug"], serve_args=["--access-log"]
        )
        server.start()
        try:
            yield spec, server
        finally:
            server.stop()


def test_caps_on_body_size_and_series_count(served: tuple[Spec, ServeProcess]) -> None:
    spec, server = served
    data = data_frame(spec)
    with httpx.Client(base_url=server.base, timeout=30) as client:
        many = {"series": [series_body(data, sid=f"s{i}") for i in range(6)]}  # max_series: 5
        response = client.post("/forecast", json=many)
        assert response.status_code == 422
        assert "too many series: 6, at most 5 per request (serving.max_series)" in response.text

        rows = []
        for i in range(6):
            one = series_body(data, sid=f"s{i}")
            temps = one["exogenous"]["temperature"]
            for k, (ts, y) in enumerate(zip(one["timestamps"], one["values"], strict=True)):
                rows.append({"unique_id": f"s{i}", "ds": ts, "y": y, "temperature": temps[k]})
        response = client.post("/invocations", json={"dataframe_records": rows})
        assert response.status_code == 422
        assert response.json() == {
            "error_code": "BAD_REQUEST",
            "message": "too many series: 6, at most 5 per request (serving.max_series)",
        }
        five = [r for r in rows if r["unique_id"] != "s5"]
        assert "too many series" not in client.post("/invocations", json={"dataframe_records": five}).text

        huge = b'{"series": [' + b" " * 250_000 + b"]}"  # max_body_bytes: 200000
        for path in ("/forecast", "/invocations", "/admin/reload"):
            response = client.post(path, content=huge, headers={"content-type": "application/json"})
            assert response.status_code == 413 and "200000 bytes" in response.json()["detail"], path


def test_the_token_is_never_logged_nor_stored(served: tuple[Spec, ServeProcess]) -> None:
    spec, server = served
    body = {"series": [series_body(data_frame(spec))]}
    with httpx.Client(base_url=server.base, timeout=30) as client:
        assert client.post("/admin/reload").status_code == 401
        refused = client.post("/admin/reload", headers={"authorization": f"Bearer {WRONG}"})
        assert refused.status_code == 403 and refused.json() == {"detail": "invalid admin token"}
        accepted = client.post("/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
        assert accepted.status_code == 200 and accepted.json()["reloaded"] is False
        # a token sent where none is needed
        answered = client.post("/forecast", json=body, headers={"authorization": f"Bearer {TOKEN}"})
        assert answered.status_code == 200
        texts = [client.get(path).text for path in ("/metadata", "/metrics", "/ready", "/openapi.json")]
        texts += [refused.text, accepted.text, answered.text]
    assert not [t for t in texts if TOKEN in t or WRONG in t]
    assert server.stop() is not None  # graceful: the prediction log is drained and closed (this test runs last)

    output = server.output()
    assert "POST /admin/reload" in output and "POST /forecast" in output  # the access log did log them
    assert "INFO tidecast.serving: serving small v1" in output  # --debug: tidecast's own log is on too
    assert "admin endpoints on" in output
    for secret in (TOKEN, WRONG):
        assert secret not in output
    state = spec.root / ".tidecast"
    stores = [p for p in state.iterdir() if p.name.startswith(("predictions.db", "mlflow.db"))]
    assert any(p.name == "predictions.db" for p in stores)
    for path in stores:
        data = path.read_bytes()
        assert TOKEN.encode() not in data and WRONG.encode() not in data, path
    from tidecast.serving.store import store_for

    assert len(store_for(spec).predictions("small")) >= 24  # the forecast above was logged, without the token


def test_the_token_comes_only_from_the_environment(served: tuple[Spec, ServeProcess]) -> None:
    import asyncio

    from tidecast.errors import SpecError
    from tidecast.serving.app import create_app
    from tidecast.spec import ServingSpec, load_spec

    spec, _ = served
    secret_fields = [f for f in ServingSpec.model_fields if re.search("token|secret|password|key", f)]
    assert secret_fields == ["token_env"]  # the spec names a variable, it never holds a secret
    text = (spec.root / "tidecast.yaml").read_text()
    (spec.root / "bad.yaml").write_text(text.replace("serving: {", "serving: {token: abc, "))
    with pytest.raises(SpecError, match="token"):
        load_spec(spec.root / "bad.yaml")

    custom = spec.model_copy(deep=True)
    custom.root, custom.source_file = spec.root, spec.source_file
    custom.serving.token_env = "MY_SERVICE_TOKEN"

    async def reload(token: str) -> int:
        transport = httpx.ASGITransport(app=create_app(custom))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
            return (await c.post("/admin/reload", headers={"authorization": f"Bearer {token}"})).status_code

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIDECAST_ADMIN_TOKEN", TOKEN)  # not the variable this spec names
        mp.delenv("MY_SERVICE_TOKEN", raising=False)
        assert asyncio.run(reload(TOKEN)) == 403
        mp.setenv("MY_SERVICE_TOKEN", "from-the-env")
        assert asyncio.run(reload(TOKEN)) == 403
        assert asyncio.run(reload("from-the-env")) == 200


# ----------------------------------------------------------------------------------- the source tree
def test_secrets_are_compared_in_constant_time() -> None:
    plain = []
    checks: dict[str, bool] = {}
    for name, tree in _files():
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops
            ):
                names = [
                    n.id if isinstance(n, ast.Name) else n.attr
                    for part in (node.left, *node.comparators)
                    for n in ast.walk(part)
                    if isinstance(n, ast.Name | ast.Attribute)
                ]
                if any(re.search("token|secret|password", n, re.IGNORECASE) for n in names):
                    plain.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.FunctionDef) and node.name in ("_authorize", "check_token"):
                calls = {_dotted(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
                checks[f"{name}:{node.name}"] = "hmac.compare_digest" in calls
    assert not plain, plain
    assert checks == {"tidecast/serving/app.py:_authorize": True, "tidecast/reporting/dashboard.py:check_token": True}


# Every call that turns bytes into objects, and where its bytes come from. A new one fails this test
# until it is reviewed and listed here (and in docs/serving.md, Security).
UNPICKLING = {
    ("tidecast/serving/loader.py", "cloudpickle.load"): "the registered version's forecaster, in its artifact folder",
    ("tidecast/tracking/pyfunc.py", "cloudpickle.load"): "MLflow's load_context: the logged model's own artifact",
    ("tidecast/pipeline/cache.py", "joblib.load"): "the pipeline cache tidecast wrote under the state folder",
    ("tidecast/reporting/step.py", "joblib.load"): "the backtest's last-fold models, in the cache entry tidecast wrote",
    ("tidecast/serving/predlog.py", "pickle.loads"): "the prediction-log writer's stdin pipe, fed by its server",
}
UNSAFE = {"eval", "exec", "compile", "__import__", "marshal.loads", "marshal.load", "yaml.unsafe_load", "dill.load"}
LOADERS = {"pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads", "joblib.load", "pd.read_pickle"}


def test_no_eval_and_every_unpickling_is_listed() -> None:
    found: set[tuple[str, str]] = set()
    problems = []
    for name, tree in _files():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = _dotted(node.func)
            if func in UNSAFE or (isinstance(node.func, ast.Name) and node.func.id in UNSAFE):
                problems.append(f"{name}:{node.lineno}: {func}(...)")
            elif func in LOADERS or func.endswith(".read_pickle"):
                found.add((name, func))
            elif func == "yaml.load":
                loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
                if not (isinstance(loader, ast.Name) and loader.id in ("SafeLoader", "CSafeLoader", "_LineLoader")):
                    problems.append(f"{name}:{node.lineno}: yaml.load without a safe Loader")
            elif func == "torch.load":
                safe = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords)
                if not safe:
                    problems.append(f"{name}:{node.lineno}: torch.load without weights_only=True")
    assert not problems, problems
    assert found == set(UNPICKLING), {"unlisted": found - set(UNPICKLING), "stale": set(UNPICKLING) - found}

    import yaml

    from tidecast.spec import _LineLoader

    assert issubclass(_LineLoader, yaml.SafeLoader)


def test_the_spec_is_read_with_a_safe_yaml_loader(tmp_path: Path) -> None:
    from tidecast.errors import SpecError
    from tidecast.spec import load_spec

    marker = tmp_path / "executed"
    (tmp_path / "tidecast.yaml").write_text(
        f'project: !!python/object/apply:os.system ["touch {marker}"]\ndata: {{source: x.csv, frequency: 1h}}\n'
    )
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path)
    assert not marker.exists()


def test_a_model_cannot_point_the_loader_outside_its_folder(tmp_path: Path) -> None:
    import yaml

    from tidecast.errors import ServingError
    from tidecast.serving.loader import _artifact_paths

    folder = tmp_path / "model"
    (folder / "artifacts").mkdir(parents=True)
    (tmp_path / "outside.pkl").write_bytes(b"not a model")
    (folder / "artifacts" / "model_card.json").write_text("{}")
    for evil in ("../outside.pkl", str(tmp_path / "outside.pkl"), "artifacts/../../outside.pkl"):
        flavor = {"artifacts": {"forecaster": {"path": evil}, "model_card": {"path": "artifacts/model_card.json"}}}
        (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": {"python_function": flavor}}))
        with pytest.raises(ServingError, match="outside its artifact folder"):
            _artifact_paths(folder, "evil v1")
    (folder / "artifacts" / "forecaster.pkl").write_bytes(b"x")
    flavor = {"artifacts": {"forecaster": {"path": "artifacts/forecaster.pkl"}}}
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": {"python_function": flavor}}))
    assert _artifact_paths(folder, "good v1")[0] == folder / "artifacts" / "forecaster.pkl"


@pytest.mark.parametrize(
    "path", ["__import__('os').system('true')", "os.system('true'):x", "mod:attr; import os", "eval", "a b:c"]
)
def test_the_spec_names_code_only_by_import_path(path: str) -> None:
    from tidecast.errors import PluginError
    from tidecast.models.plugins import load_object

    with pytest.raises(PluginError, match="not an import path"):
        load_object(path)


# ------------------------------------------------------------------------------- image and audit
def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending += " " + line.rstrip("\\").strip() if pending else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def test_the_docker_image_runs_as_a_non_root_user() -> None:
    steps = _instructions((ROOT / "Dockerfile").read_text())
    kinds = [k for k, _ in steps]
    start = min(i for i, k in enumerate(kinds) if k in ("CMD", "ENTRYPOINT"))
    users = [(i, rest) for i, (k, rest) in enumerate(steps) if k == "USER"]
    assert users and users[-1][0] < start, "a USER instruction must come before CMD/ENTRYPOINT"
    user = users[-1][1].split(":")[0]
    assert user not in ("root", "0") and not user.startswith("$"), user
    created = [rest for k, rest in steps[: users[-1][0]] if k == "RUN" and "useradd" in rest]
    assert created, "the user is created in the image"
    uid = re.search(r"--uid\s+(\d+)", created[-1])
    assert uid and int(uid.group(1)) >= 1000 and re.search(rf"\b{re.escape(user)}\b", created[-1])
    assert not [rest for k, rest in steps[users[-1][0] :] if k == "USER" and rest.split(":")[0] in ("root", "0")]

    compose = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"^\s*user:\s*[\"']?(root|0)\b", compose, re.MULTILINE)
    assert "TIDECAST_ADMIN_TOKEN: ${TIDECAST_ADMIN_TOKEN" in compose  # from the environment, never a literal
    assert re.search(r"^\s*read_only:\s*true", compose, re.MULTILINE)


def _audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import sys

    full = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "audit.sh"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
        check=False,
    )


def test_audit_script_judges_reports_and_never_fails_on_the_network(tmp_path: Path) -> None:
    pytest.importorskip("pip_audit")
    clean = {
        "dependencies": [
            {"name": "numpy", "version": "2.0.0", "vulns": []},
            {"name": "tidecast", "skip_reason": "local"},
        ]
    }
    vulnerable = {
        "dependencies": [
            {"name": "numpy", "version": "2.0.0", "vulns": []},
            {"name": "requests", "version": "2.19.0", "vulns": [{"id": "PYSEC-2018-28", "fix_versions": ["2.20.0"]}]},
        ]
    }
    unanswered = {"dependencies": [{"name": "numpy", "skip_reason": "Dependency not found on PyPI"}]}
    results = {}
    for label, report in (("clean", clean), ("vulnerable", vulnerable), ("unanswered", unanswered)):
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps(report))
        results[label] = _audit("--report", str(path))
    assert (
        results["clean"].returncode == 0 and "1 packages audited, no known vulnerabilities" in results["clean"].stdout
    )
    assert results["vulnerable"].returncode == 1
    assert "requests 2.19.0: PYSEC-2018-28 (fixed in: 2.20.0)" in results["vulnerable"].stdout
    assert results["unanswered"].returncode == 0 and "nothing was audited" in results["unanswered"].stdout

    # the service unreachable (a proxy on a closed port): one plain line, exit 0
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("requests==2.19.0\n")
    closed = f"http://127.0.0.1:{free_port()}"
    offline = _audit(
        "-r",
        str(requirements),
        "--no-deps",
        "--disable-pip",
        env={"HTTPS_PROXY": closed, "HTTP_PROXY": closed, "https_proxy": closed, "http_proxy": closed, "NO_PROXY": ""},
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    lines = offline.stdout.strip().splitlines()
    assert len(lines) == 1 and "could not be reached" in lines[0] and "nothing was audited" in lines[0], lines
