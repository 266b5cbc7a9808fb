"""The service as a subprocess for the scripts that load it (`stress.py`, `benchmark.py serve`):
`python -m service` on free loopback ports, its resources read from /proc (CPU time, RSS, open
file descriptors, threads) and its Prometheus metrics."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) process `pid` has used; NaN without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """SIGTERM `process` and wait for it to exit; SIGKILL it after `timeout_s`."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()


class ServiceProcess:
    """`python -m service` with `settings` (SSD_* names without the prefix); SIGTERM on exit.

    Its stdout and stderr go to `log_path`, which the scenarios read for tracebacks.
    """

    def __init__(self, settings: dict[str, Any], log_path: Path) -> None:
        self.host = "127.0.0.1"
        self.http_port, self.grpc_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "SSD_HOST": self.host,
            "SSD_HTTP_PORT": str(self.http_port),
            "SSD_GRPC_PORT": str(self.grpc_port),
            "SSD_LOG_LEVEL": "INFO",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **{f"SSD_{name.upper()}": str(value) for name, value in settings.items()},
        }
        self.log_path = log_path
        self.grpc_target = f"{self.host}:{self.grpc_port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def __enter__(self) -> ServiceProcess:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        end = time.monotonic() + 300
        while time.monotonic() < end:
            if self.process.poll() is not None:
                self._log.close()
                tail = self.log_path.read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError(
                    f"service exited with code {self.process.returncode}; the end of its log "
                    f"({self.log_path}):\n" + "\n".join(tail)
                )
            if self.get("/readyz", timeout=1)[0] == 200:
                return self
            time.sleep(0.25)
        raise RuntimeError("service did not become ready within 300 s")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        stop(self.process)
        self._log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """(status, body) of GET `path` on the HTTP port; status 0 on a transport error."""
        connection = http.client.HTTPConnection(self.host, self.http_port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return 0, b""
        finally:
            connection.close()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mb(self) -> float:
        """Resident set size of the service process, MiB."""
        return self._status_field("VmRSS") / 1024.0

    def threads(self) -> int:
        return int(self._status_field("Threads"))

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def _status_field(self, name: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return float(line.split()[1])
        raise RuntimeError(f"no {name} in /proc/{self.pid}/status")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (name, sorted labels), summed over models
        (the `model` and `version` labels)."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = {k: v for k, v in sample.labels.items() if k not in ("model", "version")}
                key = (sample.name, tuple(sorted(labels.items())))
                totals[key] = totals.get(key, 0.0) + sample.value
        return totals

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
