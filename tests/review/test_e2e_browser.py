"""End to end in headless Chromium: the real Airflow API server with the plugin, a real login,
a partition aligned through the real local Triton, and the clip page's media and plots loading.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser``). The screenshot is saved
to ``var/review-e2e/clip.png`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import pytest
import requests

from avalign.orchestration import REPO_ROOT
from avalign.review.standalone import free_port, stop_process_group, ui_env
from tests.review import webdriver
from tests.review.conftest import AIRFLOW_PASSWORDS, airflow_test_env

pytestmark = [pytest.mark.slow, pytest.mark.triton,
              pytest.mark.skipif(not webdriver.available(), reason="chromium/chromedriver missing: make browser")]

SCREENSHOT = REPO_ROOT / "var" / "review-e2e" / "clip.png"


@pytest.fixture(scope="module")
def e2e_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e") / "var"


@pytest.fixture(scope="module")
def api_server(e2e_root, review_root, airflow_home, tmp_path_factory):
    """``airflow api-server`` on loopback with our plugin (started first: it boots while Triton works).

    Roots: the e2e partition (``var``) and conftest's fake 1,000-clip partition (``var-2``).
    """
    port = free_port()
    env = {**os.environ, **airflow_test_env(airflow_home, review_root, tmp_path_factory.mktemp("e2e-cache")),
           **{k: v for k, v in ui_env(port, home=airflow_home).items() if k.startswith("AIRFLOW__API")
              or k.startswith("AIRFLOW__LOGGING")}}
    env["AVALIGN_REVIEW_ROOTS"] = f"{e2e_root}{os.pathsep}{review_root}"
    log_path = tmp_path_factory.mktemp("e2e-log") / "api-server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield {"base": f"http://127.0.0.1:{port}", "proc": proc, "log": log_path}
    stop_process_group(proc)  # the server and its workers: they share its session
    log.close()


def wait_ready(server: dict, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{server['base']}/api/v2/monitor/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert server["proc"].poll() is None, server["log"].read_text()[-3000:]
        time.sleep(0.3)
    raise AssertionError("api-server not ready:\n" + server["log"].read_text()[-3000:])


@pytest.fixture(scope="module")
def aligned(e2e_root, api_server, triton_client) -> dict[str, str]:
    """A 2-clip partition built and aligned through the real Triton models."""
    from avalign.agent.config import AlignConfig
    from avalign.agent.partition import run_partition
    from avalign.data.dataset import build_dataset

    dataset, out = e2e_root / "dataset", e2e_root / "aligned"
    build_dataset(str(dataset), partitions=1, clips_per_partition=2, duration_s=2.0, seed=3, progress=None)
    run = run_partition(str(dataset / "manifests" / "part-00000.parquet"), str(out), run_id="e2e",
                        config=AlignConfig(max_cycles=2), client=triton_client, progress=lambda m: None)
    table = pd.read_parquet(run.results_uri)
    edited = table[table["audio_uri"].notna()]
    clip = str((edited if len(edited) else table).iloc[0]["clip_id"])
    return {"out": "var/aligned", "run": "e2e", "part": run.partition, "clip": clip}


def test_clip_page_plays_both_tracks_and_shows_the_plots(api_server, aligned):
    wait_ready(api_server)
    base = api_server["base"]
    login = requests.post(f"{base}/auth/token", json={"username": "viewer", "password": AIRFLOW_PASSWORDS["viewer"]}, timeout=30)
    assert login.status_code == 201, login.text
    token = login.json()["access_token"]
    clip_url = f"{base}/av-review/clip?{urlencode(aligned)}"

    browser = webdriver.Browser()
    try:
        browser.get(clip_url)  # no login yet: Airflow's auth refuses, the page points to the login
        assert "Log in to Airflow" in browser.run("return document.body.innerText")
        browser.add_cookie("_token", token)  # what Airflow's login sets in a browser
        browser.get(clip_url)
        state = browser.wait_for("""
            const a = [...document.querySelectorAll('audio')].map(e => ({id: e.id, ready: e.readyState,
                duration: e.duration, error: e.error && e.error.code}));
            const img = [...document.querySelectorAll('img')].map(e => ({id: e.id, done: e.complete,
                width: e.naturalWidth}));
            const v = document.getElementById('video');
            const ok = a.length === 2 && a.every(t => t.ready >= 1 && t.duration > 0 && !t.error)
                && img.length === 3 && img.every(i => i.done && i.width > 0);
            return {ok, audio: a, images: img, video: v && {ready: v.readyState, error: v.error && v.error.code}};
        """, timeout_s=45)
        browser.run("window.scrollTo(0, 0)")
        shot = browser.screenshot(SCREENSHOT)
        # switching the track keeps the aligned one in step with the video
        browser.run("document.querySelector('input[value=aligned]').click()")
        switched = browser.run("return document.getElementById('track-aligned').paused === "
                               "document.getElementById('video').paused")
        # the clip table of a 1,000-clip partition, as the browser gets it (measured, not asserted)
        big = {"out": "var-2/out", "run": "run-1", "part": "big-00001"}
        timings = []
        for page in (1, 7):
            browser.get(f"{base}/av-review/partition?{urlencode({**big, 'page': page})}")
            timings.append(browser.run("""const n = performance.getEntriesByType('navigation')[0];
                return {page: new URLSearchParams(location.search).get('page'),
                        rows: document.querySelectorAll('#clips tbody tr').length,
                        response_ms: Math.round(n.responseEnd - n.requestStart),
                        dom_ready_ms: Math.round(n.domContentLoadedEventEnd - n.startTime),
                        load_ms: Math.round(n.loadEventEnd - n.startTime)};"""))
    finally:
        browser.close()
    print(f"\n[review e2e] {json.dumps(state)}\n[review e2e] screenshot: {shot}")
    print(f"[review e2e] 1,000-clip partition in Chromium: {json.dumps(timings)}")
    assert all(t["rows"] == 50 for t in timings)
    assert state["ok"], state
    assert {t["id"] for t in state["audio"]} == {"track-original", "track-aligned"}
    assert {i["id"] for i in state["images"]} == {"spec-before", "spec-after", "sync-plot"}
    assert switched
    assert shot.stat().st_size > 10_000
