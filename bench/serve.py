"""Serving benchmark: `tidecast serve` against `mlflow models serve` on the power example's champion.

Both servers run on free loopback ports and are driven, one after the other, by a separate load
process (``wrk`` when it is installed, else a small asyncio + httpx client in a subprocess) for a
fixed duration with the same request: one 288-step forecast of one series from 288 points of
history (plus the 288 + 288 temperature values the model needs). It prints requests/s, p50, p99
and errors of each, and the throughput ratio; the two servers' answers are checked to be equal first.

    make demo                        # once: trains and registers examples/power's champion
    python bench/serve.py            # 15 s per server and connection count
    python bench/serve.py --duration 15 --connections 1,4 --repeat 3 --markdown
    python bench/serve.py --in-process       # CPU per step of one request, tidecast's path and MLflow's

The prediction log of the tidecast server goes to a temporary SQLite file (not the example's store).
Loopback only; every process started here is stopped before the script ends.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

LOAD_CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import httpx

    url, body_file, duration, connections = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    body = open(body_file, "rb").read()
    latencies, errors = [], 0

    async def worker(client, deadline):
        global errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = await client.post(url, content=body, headers={"content-type": "application/json"})
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    async def main():
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            started = time.perf_counter()
            deadline = started + duration
            await asyncio.gather(*(worker(client, deadline) for _ in range(connections)))
            elapsed = time.perf_counter() - started
        latencies.sort()
        pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
        print(json.dumps({"requests": len(latencies), "errors": errors, "seconds": elapsed,
                          "rps": len(latencies) / elapsed, "p50": pick(0.50), "p99": pick(0.99)}))

    asyncio.run(main())
    """
)

WRK_SCRIPT = textwrap.dedent(
    """
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    local f = io.open("{body}", "rb")
    wrk.body = f:read("*a")
    f:close()
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(store_uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["MLFLOW_TRACKING_URI"] = store_uri
    env["MLFLOW_REGISTRY_URI"] = store_uri
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    env.pop("TIDECAST_ENV", None)
    return env


def ensure_champion(example: Path, model: str) -> None:
    """Run the example's pipeline (as `make demo` does) unless its registry already has a champion."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    db = example / ".tidecast" / "mlflow.db"
    if db.exists():
        uri = f"sqlite:///{db}"
        try:
            MlflowClient(uri, uri).get_model_version_by_alias(model, "champion")
            return
        except MlflowException:
            pass
    print(f"{example}: no registered champion yet, running the pipeline (make demo)...", flush=True)
    subprocess.run([str(BIN / "tidecast"), "run"], cwd=example, check=True, env=child_env(f"sqlite:///{db}"))


def request_bodies(store_uri: str, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the /forecast body, the MLflow /invocations body) of the same request, from the champion's input example."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(store_uri)
    mlflow.set_registry_uri(store_uri)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{model}@champion"))
    example = json.loads((local / "serving_input_example.json").read_text())
    split = example["dataframe_split"]
    frame = pd.DataFrame(split["data"], columns=split["columns"])
    history = frame[frame["y"].notna()]
    series: dict[str, Any] = {"timestamps": history["ds"].tolist(), "values": history["y"].tolist()}
    exog = [c for c in frame.columns if c not in ("unique_id", "ds", "y")]
    if exog:
        series["exogenous"] = {c: frame[c].tolist() for c in exog}
    params = example.get("params") or {}
    forecast = {"series": [series], **{k: v for k, v in params.items() if k in ("horizon", "quantiles")}}
    invocations = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False)), "params": params}
    return forecast, invocations


def start(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")  # noqa: SIM115 - closed when the process is stopped
    return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started (its own session)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def same_answers(forecast_url: str, forecast_body: dict, invocations_url: str, invocations_body: dict) -> str:
    import httpx
    import numpy as np

    ours = httpx.post(forecast_url, json=forecast_body, timeout=60)
    theirs = httpx.post(
        invocations_url, content=json.dumps(invocations_body), timeout=60, headers={"content-type": "application/json"}
    )
    if ours.status_code != 200 or theirs.status_code != 200:
        return f"not compared (HTTP {ours.status_code} / {theirs.status_code})"
    [fc] = ours.json()["forecasts"]
    rows = theirs.json()["predictions"]
    equal = np.array_equal(np.asarray(fc["yhat"]), np.asarray([r["yhat"] for r in rows]))
    for q, values in fc["quantiles"].items():
        equal = equal and np.array_equal(np.asarray(values), np.asarray([r[f"q{q}"] for r in rows]))
    equal = equal and [t.rstrip("Z") for t in fc["timestamps"]] == [r["ds"] for r in rows]
    return "identical" if equal else "DIFFERENT"


def drive(url: str, body_file: Path, duration: float, connections: int, tool: str) -> dict[str, float]:
    """Load ``url`` from a separate process for ``duration`` seconds."""
    if tool == "wrk":
        script = body_file.with_suffix(".lua")
        script.write_text(WRK_SCRIPT.format(body=body_file))
        threads = max(1, min(connections, 2))
        done = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{int(duration)}s",
                "--latency",
                "--timeout",
                "30s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=True,
        )
        return parse_wrk(done.stdout)
    done = subprocess.run(
        [sys.executable, "-c", LOAD_CLIENT, url, str(body_file), str(duration), str(connections)],
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median throughput (its own latencies), errors summed over the runs."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["errors"] = sum(r["errors"] for r in runs)
    return chosen


def parse_wrk(text: str) -> dict[str, float]:
    def seconds(value: str) -> float:
        for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
            if value.endswith(unit):
                return float(value[: -len(unit)]) * scale
        return float(value)

    out: dict[str, float] = {"errors": 0.0}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "50%":
            out["p50"] = seconds(parts[1])
        elif parts[0] == "99%":
            out["p99"] = seconds(parts[1])
        elif line.startswith("Requests/sec:"):
            out["rps"] = float(parts[1])
        elif "requests in" in line:
            out["requests"] = float(parts[0])
        elif line.strip().startswith("Non-2xx"):
            out["errors"] += float(parts[-1])
        elif line.strip().startswith("Socket errors"):
            out["errors"] += sum(float(p.strip(",")) for p in parts if p.strip(",").isdigit())
    out["requests"] = out.get("requests", 0.0) - out["errors"]
    return out


def in_process(example: Path, model: str, store_uri: str, calls: int = 30) -> None:
    """CPU per request in this process, step by step, for tidecast's hot path and MLflow's (a Markdown table)."""
    from io import StringIO

    import cloudpickle
    import mlflow
    import numpy as np
    import pandas as pd
    import torch
    from mlflow.pyfunc.scoring_server import infer_and_parse_data, predictions_to_json

    from tidecast.serving import fast
    from tidecast.serving.app import dumps
    from tidecast.serving.loader import load_model
    from tidecast.serving.schemas import ForecastRequest
    from tidecast.spec import load_spec
    from tidecast.tracking.pyfunc import forecast_with

    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = store_uri
    loaded = load_model(load_spec(example), f"models:/{model}@champion")
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model}@champion")
    with open(loaded.artifact_files[0], "rb") as handle:
        plain = cloudpickle.load(handle)
    forecast_body, invocations_body = request_bodies(store_uri, model)
    body, inv = json.dumps(forecast_body), json.dumps(invocations_body)
    split = invocations_body["dataframe_split"]
    frame = pd.DataFrame(split["data"], columns=split["columns"])
    request = ForecastRequest.model_validate(json.loads(body))
    prepared = fast.prepare(loaded, request, max_series=1000)
    out = fast.predict_frames(loaded, prepared.history, prepared.future, prepared.horizon, prepared.quantiles)
    inner = getattr(loaded.forecaster, "inner", loaded.forecaster)

    def ours() -> bytes:
        req = ForecastRequest.model_validate(json.loads(body))
        p = fast.prepare(loaded, req, max_series=1000)
        result = fast.predict_frames(loaded, p.history, p.future, p.horizon, p.quantiles)
        return dumps(fast.answer(loaded, p, result))

    def theirs() -> None:
        payload = json.loads(inv)
        data = infer_and_parse_data({"dataframe_split": payload["dataframe_split"]}, pyfunc.metadata.get_input_schema())
        predictions_to_json(pyfunc.predict(data, params=payload["params"]), StringIO())

    steps = [
        (
            "tidecast: parse + validate the JSON body (pydantic)",
            lambda: ForecastRequest.model_validate(json.loads(body)),
        ),
        ("tidecast: checks + model frames (numpy)", lambda: fast.prepare(loaded, request, max_series=1000)),
        (
            "tidecast: forecaster.predict (caches warm)",
            lambda: fast.predict_frames(
                loaded, prepared.history, prepared.future, prepared.horizon, prepared.quantiles
            ),
        ),
        ("tidecast: answer + orjson", lambda: dumps(fast.answer(loaded, prepared, out))),
        ("tidecast: whole request", ours),
        (
            "— of which the inner model's `predict`",
            lambda: inner.predict(prepared.horizon, history=prepared.history, X_future=prepared.future),
        ),
        (
            "the pyfunc's `forecast_with` (the same forecaster, caches warm)",
            lambda: forecast_with(plain, loaded.card, frame, invocations_body["params"]),
        ),
        ("MLflow: parse + schema enforcement + pyfunc predict + JSON", theirs),
    ]
    net = getattr(inner, "_net", None)
    if callable(net):
        width = next(net().parameters()).shape[1]
        x = torch.zeros((1, width))
        steps.insert(6, ("— of which the network's forward pass", lambda: net()(x)))
    print(f"1-min load average {os.getloadavg()[0]:.1f}; {calls} calls per step\n")
    print("| step | min ms | median ms |\n|---|---|---|")
    for label, fn in steps:
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1000)
        print(f"| {label} | {min(times):.1f} | {float(np.median(times)):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--example", default=str(ROOT / "examples" / "power"))
    parser.add_argument("--model", default="power-demo", help="Registered model name of the example.")
    parser.add_argument("--duration", type=float, default=15.0, help="Seconds of load per server and connection count.")
    parser.add_argument("--connections", default="1,4", help="Concurrent connections, e.g. '1,4'.")
    parser.add_argument("--warmup", type=int, default=20, help="Requests sent to each server before measuring.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs per server and connection count (median kept).")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-log-predictions", action="store_true", help="Serve without the prediction log.")
    parser.add_argument("--markdown", action="store_true", help="Print the table as Markdown.")
    parser.add_argument("--in-process", action="store_true", help="Only time each step of one request in this process.")
    args = parser.parse_args()

    import httpx
    import yaml

    example = Path(args.example).resolve()
    ensure_champion(example, args.model)
    store_uri = f"sqlite:///{example / '.tidecast' / 'mlflow.db'}"
    if args.in_process:
        in_process(example, args.model, store_uri)
        return
    tool = args.tool if args.tool != "auto" else ("wrk" if shutil.which("wrk") else "python")
    connections = [int(c) for c in args.connections.split(",") if c.strip()]

    work = Path(tempfile.mkdtemp(prefix="tidecast-bench-serve-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        spec = yaml.safe_load((example / "tidecast.yaml").read_text())
        spec["data"]["source"] = str((example / spec["data"]["source"]).resolve())
        spec["predictions"] = {"url": f"sqlite:///{work / 'predictions.db'}"}
        spec.setdefault("serving", {})["log_predictions"] = not args.no_log_predictions
        spec.pop("envs", None)
        (work / "tidecast.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

        forecast_body, invocations_body = request_bodies(store_uri, args.model)
        ours_file, theirs_file = work / "forecast.json", work / "invocations.json"
        ours_file.write_text(json.dumps(forecast_body))
        theirs_file.write_text(json.dumps(invocations_body))
        env = child_env(store_uri)
        p_ours, p_theirs = free_port(), free_port()
        commands = {
            "tidecast serve": [
                str(BIN / "tidecast"),
                "serve",
                "--spec",
                str(work / "tidecast.yaml"),
                "--host",
                "127.0.0.1",
                "--port",
                str(p_ours),
            ],
            "mlflow models serve": [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{args.model}@champion",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(p_theirs),
            ],
        }
        print(
            f"starting: {' '.join(commands['tidecast serve'])}\nstarting: {' '.join(commands['mlflow models serve'])}",
            flush=True,
        )
        ours = start(commands["tidecast serve"], env, work / "tidecast.log", work)
        procs.append(ours)
        theirs = start(commands["mlflow models serve"], env, work / "mlflow.log", work)
        procs.append(theirs)
        wait_ready(ours, f"http://127.0.0.1:{p_ours}/ready", work / "tidecast.log")
        wait_ready(theirs, f"http://127.0.0.1:{p_theirs}/ping", work / "mlflow.log")
        targets = {
            "tidecast serve": (f"http://127.0.0.1:{p_ours}/forecast", ours_file, forecast_body),
            "mlflow models serve": (f"http://127.0.0.1:{p_theirs}/invocations", theirs_file, invocations_body),
        }
        verdict = same_answers(
            targets["tidecast serve"][0], forecast_body, targets["mlflow models serve"][0], invocations_body
        )
        print(f"answers of the two servers: {verdict}", flush=True)
        for url, _, body in targets.values():
            for _ in range(args.warmup):
                httpx.post(url, content=json.dumps(body), headers={"content-type": "application/json"}, timeout=60)

        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        loads = [os.getloadavg()[0]]
        for c in connections:
            for repeat in range(args.repeat):  # alternate the servers, so both see the same background load
                order = list(targets.items()) if repeat % 2 == 0 else list(targets.items())[::-1]
                for name, (url, body_file, _) in order:
                    print(
                        f"loading {name} with {c} connection(s) for {args.duration:g} s ({tool}), "
                        f"run {repeat + 1}/{args.repeat}...",
                        flush=True,
                    )
                    runs.setdefault((name, c), []).append(drive(url, body_file, args.duration, c, tool))
                    loads.append(os.getloadavg()[0])
        results = [(name, c, median_run(found)) for (name, c), found in runs.items()]
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)

    header = ["server", "connections", "requests/s", "p50 ms", "p99 ms", "errors", "vs mlflow"]
    rows = []
    for name, c, r in results:
        base = next(x for n, k, x in results if n == "mlflow models serve" and k == c)
        ratio = r["rps"] / base["rps"] if base["rps"] else float("nan")
        rows.append(
            [
                name,
                str(c),
                f"{r['rps']:.1f}",
                f"{r['p50'] * 1000:.1f}",
                f"{r['p99'] * 1000:.1f}",
                f"{int(r['errors'])}",
                f"{ratio:.2f}×",
            ]
        )
    print(
        f"\nmachine: {platform.node()} ({os.cpu_count()} cores), python {platform.python_version()}, "
        f"load tool: {tool}, {args.duration:g} s per run, median of {args.repeat} run(s), answers {verdict}; "
        f"1-min load average during the runs: {min(loads):.1f}-{max(loads):.1f}"
    )
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
