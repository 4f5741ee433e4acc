"""Services bind to loopback by default: Triton's sockets, the UI, the distributed stack."""

from __future__ import annotations

import inspect
import ipaddress

import psutil
import pytest

from avalign.cli import build_parser
from avalign.serving.launcher import TritonServer


@pytest.mark.triton
def test_tritonserver_listens_on_loopback_only(triton_server):
    procs = [psutil.Process(triton_server.process.pid)]
    procs += procs[0].children(recursive=True)
    listening = [c.laddr for p in procs for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    ports = {addr.port for addr in listening}
    assert {triton_server.grpc_port, triton_server.http_port} <= ports
    assert all(_is_loopback(addr.ip) for addr in listening), listening


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # gRPC binds ::ffff:127.0.0.1
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def test_defaults_bind_loopback():
    assert inspect.signature(TritonServer).parameters["host"].default == "127.0.0.1"
    ui = build_parser().parse_args(["ui"])
    assert ui.host == "127.0.0.1"
    from avalign.distributed import DistributedConfig, profile_env

    env = profile_env(DistributedConfig(home="/nonexistent"), api_port=1234, jwt_secret="x")
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://127.0.0.1:")
