"""Optional protection: TLS over HTTP and gRPC with a certificate made here, the bearer token
(401 / UNAUTHENTICATED without it, health open), docs / reflection / model-config switches
and CORS, on one locked-down service."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service._generated import detector_pb2, detector_pb2_grpc
from service.security import check_tls_files
from service.settings import SettingsError, load_settings
from service.startup import StartupError
from tests.service.conftest import ServiceHarness, encode, make_settings, rectangle_image

TOKEN = "s3cret-token-for-tests-only"
ORIGIN = "https://app.example"
PNG = encode(rectangle_image((40, 20, 100, 80)))


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 and its key, PEM files in `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def locked(oracle_detector, certificate) -> Iterator[ServiceHarness]:
    cert, key = certificate
    settings = make_settings(
        tls_cert_file=cert,
        tls_key_file=key,
        auth_token=TOKEN,
        docs_enabled=False,
        grpc_reflection=False,
        expose_model_config=False,
        cors_origins=ORIGIN,
    )
    harness = ServiceHarness(settings, loader=lambda: oracle_detector).start()
    yield harness
    harness.stop()


@pytest.fixture
def https(locked, certificate) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    with httpx.Client(base_url=f"https://127.0.0.1:{locked.http_port}", verify=context) as client:
        yield client


@pytest.fixture
def channel(locked, certificate) -> Iterator[grpc.Channel]:
    credentials = grpc.ssl_channel_credentials(root_certificates=certificate[0].read_bytes())
    with grpc.secure_channel(locked.grpc_target, credentials) as channel:
        yield channel


AUTH = {"authorization": f"Bearer {TOKEN}"}
GRPC_AUTH = (("authorization", f"Bearer {TOKEN}"),)


def test_https_detect_with_the_token(https):
    response = https.post("/detect", content=PNG, headers={**AUTH, "content-type": "image/png"})
    assert response.status_code == 200, response.text
    assert [d["label"] for d in response.json()["detections"]] == ["circle"]


def test_plain_http_to_the_tls_port_gets_no_answer(locked):
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{locked.http_port}/healthz", timeout=5)


def test_grpc_over_tls_with_the_token(channel):
    stub = detector_pb2_grpc.DetectorStub(channel)
    reply = stub.Detect(detector_pb2.DetectRequest(image=PNG), timeout=20, metadata=GRPC_AUTH)
    assert [d.label for d in reply.detections] == ["circle"]


def test_plaintext_grpc_to_the_tls_port_fails(locked):
    with grpc.insecure_channel(locked.grpc_target) as plain, pytest.raises(grpc.RpcError) as raised:
        detector_pb2_grpc.DetectorStub(plain).GetModel(
            detector_pb2.GetModelRequest(), timeout=5, metadata=GRPC_AUTH
        )
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong-token-0123456789"},
                                     {"authorization": TOKEN}])  # fmt: skip
@pytest.mark.parametrize(("method", "path"), [("POST", "/detect"), ("GET", "/model")])
def test_http_without_the_right_token_is_401(https, headers, method, path):
    response = https.request(
        method, path, content=PNG, headers={**headers, "content-type": "image/png"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_health_and_metrics_stay_open(https, path):
    assert https.get(path).status_code == 200


def test_grpc_without_the_token_is_unauthenticated_and_health_stays_open(channel):
    stub = detector_pb2_grpc.DetectorStub(channel)
    for call in (
        lambda: stub.Detect(detector_pb2.DetectRequest(image=PNG), timeout=10),
        lambda: stub.GetModel(detector_pb2.GetModelRequest(), timeout=10),
        lambda: list(stub.StreamDetect(iter([detector_pb2.DetectRequest(image=PNG)]), timeout=10)),
        lambda: stub.Detect(
            detector_pb2.DetectRequest(image=PNG), timeout=10, metadata=(("authorization", "x"),)
        ),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_docs_and_openapi_can_be_switched_off(https):
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert https.get(path, headers=AUTH).status_code == 404


def test_reflection_can_be_switched_off(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.ServerReflectionInfo(iter([request]), timeout=10, metadata=GRPC_AUTH))
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_model_config_can_be_hidden(https, channel):
    payload = https.get("/model", headers=AUTH).json()
    assert payload["config"] is None
    assert payload["class_names"] == ["circle", "square", "triangle", "star", "ring"]
    info = detector_pb2_grpc.DetectorStub(channel).GetModel(
        detector_pb2.GetModelRequest(), timeout=10, metadata=GRPC_AUTH
    )
    assert (info.config_json, info.name) == ("", "ssd7")


def test_cors_allows_the_configured_origin_only(https):
    preflight = {"access-control-request-method": "POST",
                 "access-control-request-headers": "authorization,content-type"}  # fmt: skip
    allowed = https.options("/detect", headers={"origin": ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    refused = https.options("/detect", headers={"origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in refused.headers
    answer = https.post(
        "/detect", content=PNG, headers={**AUTH, "origin": ORIGIN, "content-type": "image/png"}
    )
    assert answer.headers["access-control-allow-origin"] == ORIGIN


def test_no_cors_headers_by_default(service):
    response = httpx.get(f"{service.http_url}/healthz", headers={"origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers


def test_openapi_documents_the_token_when_it_is_required(oracle_detector):
    import asyncio

    from service.http_app import create_app
    from service.runtime import Runtime

    settings = make_settings(auth_token=TOKEN)
    app = create_app(settings, Runtime(settings, loader=lambda: oracle_detector))

    async def fetch() -> dict:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (await client.get("/openapi.json")).json()

    schema = asyncio.run(fetch())
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert "401" in schema["paths"]["/detect"]["post"]["responses"]
    assert "401" in schema["paths"]["/model"]["get"]["responses"]
    assert "401" not in schema["paths"]["/healthz"]["get"]["responses"]


def test_tls_settings_come_in_pairs_and_tokens_are_long(certificate, monkeypatch):
    monkeypatch.setenv("SSD_TLS_CERT_FILE", str(certificate[0]))
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert raised.value.lines == ["SSD_TLS_CERT_FILE and SSD_TLS_KEY_FILE must be set together"]
    monkeypatch.delenv("SSD_TLS_CERT_FILE")
    monkeypatch.setenv("SSD_AUTH_TOKEN", "short")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert raised.value.lines == ["SSD_AUTH_TOKEN: a bearer token needs at least 16 characters"]


def test_unusable_certificate_stops_start_up_in_one_line(tmp_path, certificate):
    bad_key = tmp_path / "key.pem"
    bad_key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    settings = make_settings(tls_cert_file=certificate[0], tls_key_file=bad_key)
    with pytest.raises(StartupError, match="not a usable PEM certificate and key"):
        check_tls_files(settings)


def test_settings_log_line_hides_the_token():
    dumped = json.loads(make_settings(auth_token=TOKEN).model_dump_json())
    assert TOKEN not in json.dumps(dumped)
