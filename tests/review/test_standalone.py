"""``make ui``: the environment and the instructions it prints (no Airflow process started)."""

from __future__ import annotations

import socket

from avalign.cli import build_parser
from avalign.orchestration import REPO_ROOT
from avalign.review.standalone import banner, free_port, ui_env


def test_ui_env_binds_loopback_and_agrees_on_one_base_url(tmp_path, monkeypatch):
    monkeypatch.delenv("AVALIGN_REVIEW_ROOTS", raising=False)
    env = ui_env(8123, home=tmp_path / "af", log_ports=(9001, 9002))
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__API__PORT"] == "8123"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8123"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "9001"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"  # a login is required
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(REPO_ROOT / "plugins")
    assert env["AVALIGN_REVIEW_ROOTS"] == env["AVALIGN_VAR"]
    assert not (tmp_path / "af").exists()


def test_banner_says_where_to_log_in(tmp_path):
    text = banner(ui_env(8123, home=tmp_path / "af", log_ports=(1, 2)))
    assert "http://127.0.0.1:8123/av-review/" in text
    assert "user 'admin'" in text
    assert str(tmp_path / "af" / "simple_auth_manager_passwords.json.generated") in text


def test_free_port_falls_back_when_the_preferred_one_is_taken():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert free_port(preferred=taken) != taken


def test_cli_has_the_ui_command():
    args = build_parser().parse_args(["ui", "--port", "8181", "--airflow-home", "/tmp/af"])
    assert (args.port, args.host, args.airflow_home) == (8181, "127.0.0.1", "/tmp/af")
