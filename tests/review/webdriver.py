"""A minimal W3C WebDriver client for Debian's chromium + chromedriver (test helper only).

Why not Selenium: the W3C protocol is a handful of HTTP calls, and this keeps the tests free of
another package. Chromium runs as root here, so it needs ``--no-sandbox``; the other flags keep it
from reaching out to the (closed) network, which would stall it.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--window-size=1280,2400",
]


def available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    """One chromedriver process and one headless Chromium session."""

    def __init__(self, *, timeout_s: float = 30.0) -> None:
        self.port = _free_port()
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if requests.get(f"{self.base}/status", timeout=2).json()["value"]["ready"]:
                    break
            except (requests.RequestException, ValueError, KeyError):
                pass
            if time.monotonic() > deadline or self.driver.poll() is not None:
                self.close()
                raise RuntimeError("chromedriver did not start")
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}"]},
        }}}
        response = requests.post(f"{self.base}/session", json=caps, timeout=timeout_s).json()
        if "sessionId" not in response.get("value", {}):
            self.close()
            raise RuntimeError(f"no browser session: {response}")
        self.session = f"{self.base}/session/{response['value']['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        r = requests.request(method, f"{self.session}{path}", json=body, timeout=60)
        value = r.json().get("value")
        if r.status_code >= 400:
            raise RuntimeError(f"webdriver {path}: {value}")
        return value

    def get(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def add_cookie(self, name: str, value: str) -> None:
        self._call("POST", "/cookie", {"cookie": {"name": name, "value": value, "path": "/", "httpOnly": True}})

    def run(self, script: str, *args: Any) -> Any:
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, *, timeout_s: float = 30.0, interval_s: float = 0.25) -> Any:
        """Poll a script until it returns something truthy; returns the last value either way."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = self.run(script)
            if value and (not isinstance(value, dict) or value.get("ok")):
                return value
            time.sleep(interval_s)
        return value

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))
        return path

    def close(self) -> None:
        if hasattr(self, "session"):
            try:
                requests.delete(self.session, timeout=10)
            except requests.RequestException:
                pass
        if self.driver.poll() is None:
            self.driver.terminate()
            try:
                self.driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
        shutil.rmtree(self.profile, ignore_errors=True)
