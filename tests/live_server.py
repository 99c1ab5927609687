"""Servers the HTTP tests talk to: a real `sessiongraph serve` process on a free local port
(the graphql-http audit, the fuzzer; bounded waits, always stopped), or the app in-process
under chosen settings."""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sessiongraph.transport.app import create_app
from sessiongraph.config import Settings
from tests.conftest import api_key


@dataclass
class LiveServer:
    url: str  # the /graphql endpoint
    log_path: Path
    process: subprocess.Popen | None = None

    def log(self) -> str:
        return self.log_path.read_text()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def live_server(database_url: str, *flags: str, env: dict | None = None, start_timeout: float = 30.0):
    """Serves `database_url` on 127.0.0.1; yields a LiveServer. Its output goes to a file (a
    pipe nobody reads would fill up and stall the server)."""
    port = free_port()
    command = [sys.executable, "-m", "sessiongraph.cli", "--database-url", database_url, "serve", "--port", str(port), *flags]
    log_file = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        command, env={**os.environ, **(env or {})}, stdout=log_file, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    server = LiveServer(f"{base}/graphql", Path(log_file.name), process)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}: {server.log()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within {start_timeout} s")
            time.sleep(0.1)
        yield server
    finally:
        stop(process)
        log_file.close()
        server.log_path.unlink(missing_ok=True)


def stop(process: subprocess.Popen) -> None:
    """Terminates a process, killed if it is still there after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def app_client(engine, **settings) -> httpx.AsyncClient:
    """A client of the app on `engine` under `settings` (the defaults for what is not given)."""
    app = create_app(Settings(database_url=str(engine.url), **settings), engine=engine)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def key(engine, org) -> str:
    """An API key of the ADMIN of `org`."""
    return await api_key(engine, org.admin)
