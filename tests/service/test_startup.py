"""Start-up fails fast and clearly: one line naming the `SSD_` variable, exit code 2, no
traceback; ports are bound exclusively before the model loads; SIGTERM works at every stage."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import keras
import pytest

from service.detector import load_detector
from service.grpc_server import build_server
from service.model_file import ModelFileError, check_model_file
from service.runtime import Runtime
from service.settings import SettingsError, load_settings
from service.startup import StartupError, bind_http_socket
from tests.service.conftest import make_settings
from tests.service.test_shutdown import ROOT, free_port

EXIT_STARTUP_ERROR = 2


def run_service(env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env={**os.environ, "SSD_HOST": "127.0.0.1", "SSD_LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == EXIT_STARTUP_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ssd-serve: ")]
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SSD_SHUTDOWN_GRACE_S", "inf", "finite number"),
        ("SSD_REQUEST_TIMEOUT_S", "nan", "finite number"),
        ("SSD_MAX_BATCH_DELAY_MS", "-inf", "finite number"),
        ("SSD_HTTP_PORT", "http", "valid integer"),
        ("SSD_MAX_BATCH_SIZE", "0", "greater than or equal to 1"),
        ("SSD_LOG_LEVEL", "LOUD", "'DEBUG'"),
    ],
)
def test_bad_setting_is_one_line_naming_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    [line] = raised.value.lines
    assert line.startswith(f"{variable}={value!r}: ")
    assert message in line


def test_bad_setting_exits_2_with_one_line_and_no_traceback():
    result = run_service({"SSD_SHUTDOWN_GRACE_S": "inf"})
    assert_one_line_error(result, "SSD_SHUTDOWN_GRACE_S='inf'", "finite number")


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def keras_archive(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.keras", "does not exist"),
        (lambda d: d, "is a directory"),
        (lambda d: written(d / "empty.keras", b""), "is empty"),
        (lambda d: written(d / "x.keras", b"\x00" * 64), "not a zip file"),
        (lambda d: keras_archive(d / "z.keras", {"a.txt": "x"}), "no config.json"),
    ],
)
def test_model_file_check_names_the_problem(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ModelFileError, match=message) as raised:
        check_model_file(path)
    assert str(path) in str(raised.value)


def test_fifo_model_path_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "model.keras"
    os.mkfifo(fifo)
    result = run_service({"SSD_MODEL_PATH": str(fifo)}, timeout_s=30)  # would hang if opened
    assert_one_line_error(result, "SSD_MODEL_PATH=", "not a regular file")


def test_unreadable_model_file_is_refused(tmp_path, monkeypatch):
    path = keras_archive(tmp_path / "m.keras", {"config.json": "{}"})
    # chmod 0 does not stop root (as CI runs), so the permission check itself is stubbed.
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(ModelFileError, match="not readable"):
        check_model_file(path)


def test_keras_model_that_is_not_ssd_is_refused_in_one_line(tmp_path):
    path = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(path)
    with pytest.raises(ModelFileError, match="not an SSD model"):
        load_detector(path)


def test_truncated_keras_model_is_refused_in_one_line(tmp_path):
    whole = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(whole)
    cut = tmp_path / "cut.keras"
    cut.write_bytes(whole.read_bytes()[:-200])  # the zip directory at the end is gone
    with pytest.raises(ModelFileError, match="not a zip file"):
        load_detector(cut)


def test_a_repository_whose_default_model_is_missing_exits_2_naming_the_file(tmp_path):
    (tmp_path / "face" / "1").mkdir(parents=True)  # a version folder without its model.keras
    missing = tmp_path / "face" / "1" / "model.keras"
    result = run_service({"SSD_MODEL_REPOSITORY": str(tmp_path), "SSD_HTTP_PORT": "0",
                          "SSD_GRPC_PORT": "0"})  # fmt: skip
    assert_one_line_error(result, f"{missing} does not exist")


def test_busy_http_port_exits_2_naming_the_variable_before_any_port_or_model(tmp_path):
    grpc_port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        http_port = busy.getsockname()[1]
        started = time.monotonic()
        result = run_service({"SSD_HTTP_PORT": str(http_port), "SSD_GRPC_PORT": str(grpc_port)})
    assert_one_line_error(result, f"SSD_HTTP_PORT={http_port}", "already in use")
    assert time.monotonic() - started < 30  # no model load: TensorFlow is never imported
    bind_http_socket("127.0.0.1", grpc_port).close()  # the gRPC port was not left bound


def test_busy_grpc_port_exits_2_naming_the_variable():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        grpc_port = busy.getsockname()[1]
        result = run_service({"SSD_HTTP_PORT": str(free_port()), "SSD_GRPC_PORT": str(grpc_port)})
    assert_one_line_error(result, f"SSD_GRPC_PORT={grpc_port}", "already in use")


def test_second_grpc_server_cannot_share_the_port(oracle_detector):
    runtime = Runtime(make_settings(), loader=lambda: oracle_detector)

    async def bind_twice() -> None:
        first, port, _ = build_server(runtime, "127.0.0.1:0")
        try:
            with pytest.raises(RuntimeError):  # SO_REUSEPORT would have let it bind
                build_server(runtime, f"127.0.0.1:{port}")
        finally:
            await first.stop(None)

    asyncio.run(bind_twice())


def test_http_socket_is_exclusive():
    first = bind_http_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(StartupError, match=f"SSD_HTTP_PORT={port}: .*already in use"):
            bind_http_socket("127.0.0.1", port)
    finally:
        first.close()


def test_http_connections_have_nagle_off():
    """asyncio sets TCP_NODELAY only on connections of a socket whose protocol says TCP; with
    Nagle on, a response body written after its headers waits for the client's delayed ACK
    (40 ms per keep-alive request, measured)."""

    async def accepted_nodelay() -> int:
        options: list[int] = []

        class Record(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                options.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listening = bind_http_socket("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Record, sock=listening)
        async with server:
            _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
            while not options:
                await asyncio.sleep(0.01)
            writer.close()
        return options[0]

    assert asyncio.run(accepted_nodelay()) != 0


# The model load never returns, so SIGTERM is certain to land while it runs.
_HANGING_LOAD = (
    "import threading, service.repository as r; "
    "r.load_detector = lambda *a, **k: threading.Event().wait(); "
    "from service.__main__ import main; main()"
)


def test_sigterm_while_the_model_loads_exits_promptly():
    http_port = free_port()
    env = {**os.environ, "SSD_HOST": "127.0.0.1", "SSD_HTTP_PORT": str(http_port),
           "SSD_GRPC_PORT": str(free_port()), "SSD_LOG_LEVEL": "WARNING"}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", _HANGING_LOAD], cwd=ROOT, env=env)
    try:
        end = time.monotonic() + 60
        while True:  # liveness answers and readiness does not: the load is under way
            assert time.monotonic() < end and process.poll() is None
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=5).status_code == 503
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
