"""Server faults, over real HTTP against a real ``tidecast serve`` subprocess hammered by client threads.

1. kill -9 under load, restart on the same port: clients see only connection errors while it is
   down (the restarted server listens once its model is loaded, so no 503 either), then the same
   forecasts as before; the orphaned prediction-log writer exits by itself and the restarted
   server logs forecasts again.
2. a registry swap under load: no request fails, each answer is exactly the forecast of the
   version it names, each client moves from the old version to the new one once and never back,
   and every request sent after the swap is answered by the new version.
3. artifacts vanish: the served version's own files first (``/ready`` 503, answers go on from
   memory), then the new champion's: the server keeps answering with the last good version,
   ``/ready`` says 503 with the reason, ``/metadata`` still names the good version; once the files
   are back it swaps the new version in.

The tests share one trained project and one server port and run in file order, once per champion:
a seasonal naive, a LightGBM model reading the known-in-future temperature, a tiny torch MLP (the
faults must not depend on what is served). The default run takes about a minute per champion;
``TIDECAST_FAULTS_FULL=1`` loads longer, with more clients, kills and swaps.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from serving_helpers import champion_params

from tests.faults.server_helpers import (
    TOKEN,
    Hammer,
    Outcome,
    ServeProcess,
    data_frame,
    forecasts_of,
    free_port,
    register_shifted,
    series_body,
    set_champion,
    shifted,
    train_project,
    wait_for,
    wait_gone,
)
from tidecast.spec import Spec

FULL = os.environ.get("TIDECAST_FAULTS_FULL") == "1"
CLIENTS = 8 if FULL else 3
LOAD_S = 4.0 if FULL else 0.8  # load before and after each fault
KILLS = 3 if FULL else 1
SWAPS = 4 if FULL else 1  # alias moves v1 -> v2 (-> v1 -> v2 ...)
V2_OFFSET, V3_OFFSET = 100.0, 200.0

pytestmark = pytest.mark.timeout(900 if FULL else 420)  # the fixtures train, migrate a store and start a server


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", params=["seasonal_naive", *(p for p in champion_params() if p.values[0] != "naive")])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spec]:
    champion = str(request.param)
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TIDECAST_ENV", "TIDECAST_ADMIN_TOKEN"):
            mp.delenv(var, raising=False)
        yield train_project(tmp_path_factory.mktemp(f"server-faults-{champion}") / "proj", champion=champion)


@pytest.fixture(scope="module")
def body(project: Spec) -> dict[str, Any]:
    return {"series": [series_body(data_frame(project))]}


@pytest.fixture(scope="module")
def server(project: Spec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """The server, on a port that stays the same across restarts (the tests replace ``proc``)."""
    running = ServeProcess(project.root, free_port(), tmp_path_factory.mktemp("server-log") / "serve.log")
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def answers(server: ServeProcess, body: dict[str, Any]) -> dict[str, Any]:
    """Each version's forecasts of ``body``: v1 as served before any fault, v2 and v3 shifted from it."""
    version, v1 = forecasts_of(server.base, body)
    assert version == "1"
    return {"1": v1, "2": shifted(v1, V2_OFFSET), "3": shifted(v1, V3_OFFSET)}


def _kinds(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.kind] = counts.get(o.kind, 0) + 1
    return counts


# ---------------------------------------------------------------------------------- 1. kill -9
def test_kill_9_under_load_then_restart_on_the_same_port(
    server: ServeProcess, project: Spec, body: dict[str, Any], answers: dict[str, Any]
) -> None:
    from tidecast.serving.store import store_for

    hammer = Hammer(server.base, body, {"1": answers["1"]}, threads=CLIENTS).start()
    windows: list[tuple[float, float]] = []  # (killed, ready again)
    try:
        for _ in range(KILLS):
            before = hammer.count()
            wait_for(lambda before=before: hammer.count() >= before + 5, 60, "answers before the kill")
            time.sleep(LOAD_S)
            writers = server.child_pids()
            assert writers, "the server runs its prediction-log writer as a child process"
            killed = time.monotonic()
            server.kill9()
            # the writer, orphaned, sees its pipe close and exits by itself (no leaked process)
            assert not wait_gone(writers), f"prediction-log writer(s) {writers} outlived the killed server"
            assert hammer.count("ok") >= 1
            logged = len(store_for(project).predictions("small"))
            ready = server.start()
            windows.append((killed, ready))
            after = hammer.count()
            wait_for(lambda after=after: hammer.count() >= after + 5, 60, "answers after the restart")
            time.sleep(LOAD_S)
    finally:
        outcomes = hammer.stop()

    kinds = _kinds(outcomes)
    bad = [o for o in outcomes if o.kind != "ok" and not o.kind.startswith("conn:")]
    assert not bad, f"only exact forecasts or connection errors expected, got {kinds}"
    for o in outcomes:
        if o.kind.startswith("conn:"):  # a connection error only while the server was down
            assert any(killed <= o.ended and o.started <= ready for killed, ready in windows), (o, windows)
        if any(o.started >= ready for _, ready in windows[-1:]):
            assert o.kind == "ok", o  # once ready again, every request is answered
    assert sum(k.startswith("conn:") for k in kinds) >= 1 and kinds.get("conn:ConnectError", 0) >= 1, kinds
    assert sum(o.started > windows[-1][1] for o in outcomes) >= 5

    ready = httpx.get(f"{server.base}/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["model"]["version"] == "1"
    assert forecasts_of(server.base, body) == ("1", answers["1"])

    # the prediction store survived the kill (its writer died mid-stream): the restarted server logs again
    wait_for(lambda: len(store_for(project).predictions("small")) > logged, 60, "the restarted server's log", pause=0.3)


# ------------------------------------------------------------------------------ 2. registry swap
def test_registry_swap_under_load_fails_no_request(
    server: ServeProcess, project: Spec, body: dict[str, Any], answers: dict[str, Any]
) -> None:
    v2 = register_shifted(project, V2_OFFSET, project.root / "extra-models" / "v2")
    assert v2 == "2"
    hammer = Hammer(server.base, body, answers, threads=CLIENTS + 1).start()
    swaps: list[tuple[str, float, float]] = []  # (new version, alias moved, server switched)
    try:
        target = "1"
        for _ in range(SWAPS):
            wait_for(lambda: hammer.count() >= 10, 60, "answers before the swap")
            time.sleep(LOAD_S / 2)
            target = "2" if target == "1" else "1"
            moved = time.monotonic()
            set_champion(project, target)

            def serving(target: str = target) -> bool:
                return httpx.get(f"{server.base}/metadata", timeout=10).json()["version"] == target

            wait_for(serving, 30, f"the server to serve v{target}")
            swaps.append((target, moved, time.monotonic()))
            time.sleep(LOAD_S / 2)
    finally:
        outcomes = hammer.stop()
    kinds = _kinds(outcomes)
    assert kinds == {"ok": len(outcomes)}, kinds  # no failure, and no answer mixing two versions
    assert {o.version for o in outcomes} == {"1", "2"}
    for index in range(hammer.threads):  # each client sees the versions change exactly once per swap
        seen = [o.version for o in outcomes if o.thread == index]
        changes = sum(a != b for a, b in itertools.pairwise(seen))
        assert changes <= SWAPS, (index, changes)
    for i, (target, _, switched) in enumerate(swaps):  # sent after the switch: answered by the new version
        until = swaps[i + 1][1] if i + 1 < len(swaps) else float("inf")
        after = [o.version for o in outcomes if switched <= o.started < until]
        assert after and set(after) == {target}, (target, set(after))
    if swaps[-1][0] != "2":
        set_champion(project, "2")
        wait_for(lambda: httpx.get(f"{server.base}/metadata", timeout=10).json()["version"] == "2", 30, "v2")
    meta = httpx.get(f"{server.base}/metadata", timeout=10).json()
    assert meta["serving"]["swaps"] >= SWAPS and meta["serving"]["last_error"] is None


# ----------------------------------------------------------------------------- 3. vanished files
def test_vanished_artifacts_keep_the_last_good_model_and_report_not_ready(
    server: ServeProcess, project: Spec, body: dict[str, Any], answers: dict[str, Any]
) -> None:
    folder = project.root / "extra-models" / "v3"
    v3 = register_shifted(project, V3_OFFSET, folder)
    assert v3 == "3"
    assert forecasts_of(server.base, body) == ("2", answers["2"])
    gone = folder.with_name("v3-gone")
    served, served_gone = folder.with_name("v2"), folder.with_name("v2-gone")

    def not_ready() -> bool:
        return httpx.get(f"{server.base}/ready", timeout=10).status_code == 503

    hammer = Hammer(server.base, body, answers, threads=CLIENTS).start()
    try:
        # the served version's own files vanish: not ready, but it still answers from memory
        served.rename(served_gone)
        wait_for(not_ready, 30, "/ready to report the missing files of the served model")
        assert "is missing" in httpx.get(f"{server.base}/ready", timeout=10).json()["reason"]
        assert forecasts_of(server.base, body) == ("2", answers["2"])
        served_gone.rename(served)
        wait_for(lambda: not not_ready(), 30, "/ready to recover")

        folder.rename(gone)  # the new champion's artifact folder vanishes, then the alias moves to it
        set_champion(project, v3)
        wait_for(not_ready, 30, "/ready to report the unloadable champion")
        time.sleep(LOAD_S)
        ready = httpx.get(f"{server.base}/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["ready"] is False
        reason = ready.json()["reason"]
        assert "models:/small@champion is v3, which cannot be loaded" in reason, reason
        assert "still serving v2" in reason, reason
        meta = httpx.get(f"{server.base}/metadata", timeout=10).json()
        assert meta["version"] == "2" and "small v3" in meta["serving"]["last_error"]
        assert forecasts_of(server.base, body) == ("2", answers["2"])
        during = hammer.count()

        gone.rename(folder)  # the files are back: the next poll swaps v3 in

        def serving_v3() -> bool:
            return httpx.get(f"{server.base}/metadata", timeout=10).json()["version"] == "3"

        wait_for(serving_v3, 30, "the server to pick up v3")
        assert httpx.get(f"{server.base}/ready", timeout=10).status_code == 200
        assert forecasts_of(server.base, body) == ("3", answers["3"])
        time.sleep(LOAD_S / 2)
    finally:
        for moved, original in ((gone, folder), (served_gone, served)):
            if moved.exists() and not original.exists():
                moved.rename(original)
        outcomes = hammer.stop()
    kinds = _kinds(outcomes)
    assert kinds == {"ok": len(outcomes)}, kinds
    assert during >= 5 and {o.version for o in outcomes} == {"2", "3"}
    metrics = httpx.get(f"{server.base}/metrics", timeout=10).text
    errors = [line for line in metrics.splitlines() if line.startswith("tidecast_registry_poll_errors_total")]
    assert errors and float(errors[0].split()[-1]) >= 1


def test_graceful_stop_leaves_no_process(server: ServeProcess) -> None:
    writers = server.child_pids()
    # uvicorn shuts down, then re-raises the SIGTERM it caught: exit status -15 (or 0 on older versions)
    assert server.stop() in (0, -signal.SIGTERM), server.output()[-2000:]
    assert server.proc is not None and f"Finished server process [{server.proc.pid}]" in server.output()
    assert not wait_gone(writers)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base}/health", timeout=2)
    assert TOKEN not in server.output()
