"""The deployment files: docker-compose.yml validated by the compose-spec parser, the Envoy
load-balancer config, the Dockerfile. No Docker engine runs here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from compose_spec import PyCompose

ROOT = Path(__file__).resolve().parents[2]


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${VAR:-default}` / `${VAR}` interpolation, from `env` or the default."""
    return re.sub(
        r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1), m.group(2) or ""), text
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    text = interpolate((ROOT / "docker-compose.yml").read_text(), {})
    return PyCompose.from_yaml(text).to_dict()  # raises ValueError on any spec violation


def test_compose_file_is_valid_with_a_model_path_set():
    text = interpolate(
        (ROOT / "docker-compose.yml").read_text(), {"SSD_MODEL_PATH": "/models/a.keras"}
    )
    services = PyCompose.from_yaml(text).to_dict()["services"]
    assert services["detector"]["environment"]["SSD_MODEL_PATH"] == "/models/a.keras"


def test_compose_detector_reserves_an_nvidia_gpu_and_mounts_models(compose):
    detector = compose["services"]["detector"]
    [device] = detector["deploy"]["resources"]["reservations"]["devices"]
    assert (device["driver"], device["capabilities"], device["device_ids"]) == (
        "nvidia",
        ["gpu"],
        ["0"],
    )
    assert any(str(v).endswith(":/models:ro") or "/models" in str(v) for v in detector["volumes"])
    assert detector["environment"]["SSD_MODEL_PATH"] in ("", None)  # unset: embedded model


def test_compose_lb_profile_runs_replicas_behind_envoy(compose):
    services = compose["services"]
    assert services["detector-replica"]["profiles"] == ["lb"]
    assert services["detector-replica"]["deploy"]["replicas"] == 2
    assert services["lb"]["profiles"] == ["lb"]
    assert services["lb"]["depends_on"]["detector-replica"]["condition"] == "service_healthy"


def test_envoy_routes_http_and_grpc_over_http2_to_the_replicas():
    config = yaml.safe_load((ROOT / "docker" / "envoy.yaml").read_text())["static_resources"]
    ports = {x["name"]: x["address"]["socket_address"]["port_value"] for x in config["listeners"]}
    assert ports == {"http": 8080, "grpc": 50051}
    clusters = {c["name"]: c for c in config["clusters"]}
    grpc_options = clusters["detector_grpc"]["typed_extension_protocol_options"]
    assert "http2_protocol_options" in next(iter(grpc_options.values()))["explicit_http_config"]
    assert (
        clusters["detector_grpc"]["health_checks"][0]["grpc_health_check"]["service_name"]
        == "ssd.v1.Detector"
    )
    assert clusters["detector_http"]["health_checks"][0]["http_health_check"]["path"] == "/readyz"
    for cluster in clusters.values():
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert endpoint["address"]["socket_address"]["address"] == "detector-replica"


def test_dockerfile_is_multi_stage_non_root_with_healthcheck_and_ci_codegen():
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.M)) >= 2
    assert re.search(r"^USER (?!root)\w+", text, flags=re.M)
    assert re.search(r"^HEALTHCHECK ", text, flags=re.M)
    # The codegen step CI runs through `make install` is the one the image runs.
    assert "-m service._codegen" in text
    assert "-m service._codegen" in (ROOT / "Makefile").read_text()
