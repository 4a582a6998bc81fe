"""Load test: drive ``POST /forecast`` of a tidecast server at a fixed rate and report what it sustained.

Open loop: request *i* is sent at ``start + i / rate`` whether or not the earlier ones have been
answered (a slow server does not slow the load down, as with real clients), for ``--duration``
seconds, from one asyncio + httpx client. It reports the achieved throughput (answered 2xx per
second), latency percentiles (from the moment each request was sent, and from the moment it was
due, which includes any lag of the load generator itself) and the failed requests (non-2xx
answers, errors and timeouts), as a table or Markdown.

    python bench/load.py --tiny --rate 50 --duration 60          # trains a tiny model, serves it, loads it
    python bench/load.py --rate 10 --duration 60 --markdown      # examples/power's champion (make demo first)
    python bench/load.py --url http://127.0.0.1:8000 --body request.json --rate 20
    python bench/load.py --tiny --rate 50 --nice 10             # the load generator at a lower priority

Without ``--url`` it starts ``tidecast serve`` itself on a free loopback port (as bench/serve.py
does: same set-up code, the prediction log in a temporary SQLite file) and stops it at the end.
Bounded: loopback targets only (``--allow-remote`` to override), at most ``--max-inflight``
requests outstanding (more count as failed), rate and duration capped; exit status 1 when any
request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

MAX_RATE = 5000.0
MAX_DURATION = 3600.0

TINY_SPEC = """\
project: tiny-load
data:
  source: data/power.csv
  time_column: timestamp
  target_column: power_kw
  frequency: 1h
  timezone: Europe/Paris
  exogenous: [{name: temperature, known_in_future: true}]
forecast: {input_window: 24h, horizon: 24h, quantiles: [0.1, 0.9]}
backtest: {folds: 2}
selection: {metric: mase}
models:
  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}
registry: {model_name: tiny-load}
"""


# ------------------------------------------------------------------------------------ targets
def is_loopback(url: str) -> bool:
    """Whether every address ``url``'s host resolves to is a loopback address."""
    host = urlsplit(url).hostname
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def train_tiny(folder: Path) -> Path:
    """A small hourly project (14 days, seasonal naive) trained and registered as ``tiny-load`` v1 champion."""
    from tidecast.datasets import make_power
    from tidecast.pipeline import run
    from tidecast.pipeline.dag import Pipeline
    from tidecast.spec import load_spec
    from tidecast.tracking.step import track
    from tidecast.training.steps import TRAINING_STEPS

    (folder / "data").mkdir(parents=True, exist_ok=True)
    make_power(days=14, seed=3, freq="1h").to_csv(folder / "data" / "power.csv", index=False)
    (folder / "tidecast.yaml").write_text(TINY_SPEC)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV"):
        os.environ.pop(var, None)
    result = run(Pipeline([*TRAINING_STEPS, track]), load_spec(folder))
    registration = result.outputs["track"]["registration"]
    if registration.get("alias") != "champion":
        raise SystemExit(f"the tiny model was not registered as champion: {registration}")
    return folder


@dataclass
class Target:
    url: str
    body: bytes
    label: str
    cleanup: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for fn in reversed(self.cleanup):
            fn()


def start_server(example: Path, model: str, log_predictions: bool, work: Path) -> Target:
    """``tidecast serve`` for ``model``'s champion of the project at ``example`` (bench/serve.py's set-up)."""
    import yaml
    from serve import BIN, child_env, free_port, request_bodies, start, stop, wait_ready

    store_uri = f"sqlite:///{example / '.tidecast' / 'mlflow.db'}"
    spec = yaml.safe_load((example / "tidecast.yaml").read_text())
    spec["data"]["source"] = str((example / spec["data"]["source"]).resolve())
    spec["predictions"] = {"url": f"sqlite:///{work / 'predictions.db'}"}
    spec.setdefault("serving", {})["log_predictions"] = log_predictions
    spec.pop("envs", None)
    (work / "tidecast.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    forecast_body, _ = request_bodies(store_uri, model)
    port = free_port()
    command = [str(BIN / "tidecast"), "serve", "--spec", str(work / "tidecast.yaml")]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    print(f"starting: {' '.join(command)}", flush=True)
    proc = start(command, child_env(store_uri), work / "server.log", work)
    target = Target(f"http://127.0.0.1:{port}", json.dumps(forecast_body).encode(), f"tidecast serve ({model})")
    target.cleanup.append(lambda: stop(proc))
    wait_ready(proc, f"{target.url}/ready", work / "server.log")
    return target


# --------------------------------------------------------------------------------------- load
@dataclass
class Result:
    due: float
    sent: float
    done: float
    status: int | None  # None: an error, named in ``error``
    error: str | None = None


async def drive(
    url: str, body: bytes, rate: float, duration: float, *, timeout: float, max_inflight: int, connections: int
) -> tuple[list[Result], int, float]:
    """Send ``rate * duration`` requests on a fixed schedule; (results, not sent at the in-flight cap, start)."""
    import httpx

    loop = asyncio.get_running_loop()
    results: list[Result] = []
    inflight = 0
    refused = 0
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def one(due: float) -> None:
            nonlocal inflight
            sent = loop.time()
            try:
                response = await client.post(url, content=body, headers=headers)
                await response.aread()
                results.append(Result(due, sent, loop.time(), response.status_code))
            except httpx.HTTPError as exc:
                results.append(Result(due, sent, loop.time(), None, type(exc).__name__))
            finally:
                inflight -= 1

        total = round(rate * duration)
        start = loop.time() + 0.05
        tasks = []
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if inflight >= max_inflight:
                refused += 1
                continue
            inflight += 1
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
    return results, refused, start


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarise(results: list[Result], refused: int, start: float, rate: float, duration: float) -> dict[str, Any]:
    ok = [r for r in results if r.status is not None and 200 <= r.status < 300]
    failures: dict[str, int] = {}
    for r in results:
        if r.status is None:
            failures[r.error or "error"] = failures.get(r.error or "error", 0) + 1
        elif not 200 <= r.status < 300:
            failures[f"HTTP {r.status}"] = failures.get(f"HTTP {r.status}", 0) + 1
    if refused:
        failures["not sent (in-flight cap)"] = refused
    end = max((r.done for r in results), default=start)
    window = max(end - start, 1e-9)
    latency = [(r.done - r.sent) * 1000 for r in ok]
    from_due = [(r.done - r.due) * 1000 for r in ok]
    lag = [(r.sent - r.due) * 1000 for r in results]
    return {
        "rate": rate,
        "duration": duration,
        "offered": len(results) + refused,
        "ok": len(ok),
        "failed": sum(failures.values()),
        "failures": failures,
        "throughput": len(ok) / window,
        "window_s": window,
        "p50_ms": percentile(latency, 0.50),
        "p90_ms": percentile(latency, 0.90),
        "p99_ms": percentile(latency, 0.99),
        "max_ms": max(latency, default=float("nan")),
        "p99_from_due_ms": percentile(from_due, 0.99),
        "p99_send_lag_ms": percentile(lag, 0.99),
    }


def table(summary: dict[str, Any], markdown: bool) -> str:
    header = [
        "rate req/s",
        "seconds",
        "sent",
        "ok",
        "failed",
        "throughput req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "p99 from due ms",
        "p99 send lag ms",
    ]
    row = [
        f"{summary['rate']:g}",
        f"{summary['duration']:g}",
        str(summary["offered"]),
        str(summary["ok"]),
        str(summary["failed"]),
        f"{summary['throughput']:.1f}",
        *(f"{summary[k]:.1f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "p99_from_due_ms", "p99_send_lag_ms")),
    ]
    if markdown:
        return "\n".join(
            [
                "| " + " | ".join(header) + " |",
                "|" + "|".join("---" for _ in header) + "|",
                "| " + " | ".join(row) + " |",
            ]
        )
    widths = [max(len(h), len(v)) for h, v in zip(header, row, strict=True)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)) for line in (header, row))


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="Requests per second (open loop).")
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of load.")
    parser.add_argument("--url", help="A running server's base URL (default: start one).")
    parser.add_argument(
        "--body", type=Path, help="The /forecast request body (JSON file); default: the model's example."
    )
    parser.add_argument("--example", type=Path, default=ROOT / "examples" / "power", help="The project to serve.")
    parser.add_argument("--model", default="power-demo", help="Its registered model name.")
    parser.add_argument("--tiny", action="store_true", help="Train and serve a tiny model instead (seconds).")
    parser.add_argument("--no-log-predictions", action="store_true", help="Serve without the prediction log.")
    parser.add_argument("--warmup", type=int, default=10, help="Requests sent before measuring.")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds before a request counts as failed.")
    parser.add_argument("--max-inflight", type=int, default=256, help="Outstanding requests at most.")
    parser.add_argument("--connections", type=int, default=64, help="HTTP connections at most.")
    parser.add_argument("--allow-remote", action="store_true", help="Allow a non-loopback --url.")
    parser.add_argument("--markdown", action="store_true", help="Print the table as Markdown.")
    parser.add_argument("--json", type=Path, help="Also write the summary to this JSON file.")
    parser.add_argument(
        "--nice", type=int, default=0, help="Lower the load generator's priority by this much (not the server's)."
    )
    args = parser.parse_args(argv)

    if not 0 < args.rate <= MAX_RATE:
        parser.error(f"--rate must be in (0, {MAX_RATE:g}]")
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in (0, {MAX_DURATION:g}]")
    if args.url and not args.allow_remote and not is_loopback(args.url):
        parser.error(f"{args.url} is not a loopback address: load tests stay on this machine (--allow-remote)")

    import httpx

    work = Path(tempfile.mkdtemp(prefix="tidecast-bench-load-"))
    target: Target | None = None
    try:
        if args.url:
            if args.body is not None:
                body = args.body.read_bytes()
            else:
                from serve import request_bodies

                store_uri = f"sqlite:///{args.example.resolve() / '.tidecast' / 'mlflow.db'}"
                body = json.dumps(request_bodies(store_uri, args.model)[0]).encode()
            target = Target(args.url.rstrip("/"), body, args.url)
        else:
            if args.tiny:
                print("training a tiny model (seasonal naive, 14 days of hourly data)...", flush=True)
                example, model = train_tiny(work / "tiny"), "tiny-load"
            else:
                from serve import ensure_champion

                example, model = args.example.resolve(), args.model
                ensure_champion(example, model)
            server_dir = work / "server"
            server_dir.mkdir()
            target = start_server(example, model, not args.no_log_predictions, server_dir)
        if args.nice:
            os.nice(args.nice)  # after the server started: it keeps its priority
        url = f"{target.url}/forecast"
        probe = httpx.post(url, content=target.body, headers={"content-type": "application/json"}, timeout=60)
        if probe.status_code != 200:
            raise SystemExit(f"the first request failed: HTTP {probe.status_code} {probe.text[:300]}")
        for _ in range(args.warmup):
            httpx.post(url, content=target.body, headers={"content-type": "application/json"}, timeout=60)
        load_before = os.getloadavg()[0]
        print(f"loading {url} at {args.rate:g} req/s for {args.duration:g} s (open loop)...", flush=True)
        results, refused, start = asyncio.run(
            drive(
                url,
                target.body,
                args.rate,
                args.duration,
                timeout=args.timeout,
                max_inflight=args.max_inflight,
                connections=args.connections,
            )
        )
        load_after = os.getloadavg()[0]
    finally:
        if target is not None:
            target.close()
        shutil.rmtree(work, ignore_errors=True)

    summary = summarise(results, refused, start, args.rate, args.duration)
    summary.update(
        {
            "target": target.label,
            "machine": f"{platform.node()} ({os.cpu_count()} cores)",
            "python": platform.python_version(),
            "load_average": [round(load_before, 1), round(load_after, 1)],
        }
    )
    print(
        f"\n{summary['target']}: {summary['machine']}, python {summary['python']}, body {len(target.body)} bytes; "
        f"1-min load average {load_before:.1f} before, {load_after:.1f} after"
    )
    print(table(summary, args.markdown))
    if summary["failures"]:
        print("failed: " + ", ".join(f"{k}: {v}" for k, v in sorted(summary["failures"].items())))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
