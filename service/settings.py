"""Service settings, read from `SSD_*` environment variables (pydantic-settings).

Every field is documented in the README's "The service" section with its default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.model_file import check_model_file

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ENV_PREFIX = "SSD_"
MIN_TOKEN_CHARS = 16
_SECRET_FIELDS = frozenset({"auth_token"})  # never echoed in an error line


class SettingsError(ValueError):
    """Settings that cannot be used; `lines` holds one message per bad variable."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def env_name(field: str) -> str:
    """The environment variable of a settings field: `http_port` -> `SSD_HTTP_PORT`."""
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(**overrides: object) -> Settings:
    """`Settings()` from the environment, with errors as one line per variable.

    Raises:
        SettingsError: lines like "SSD_SHUTDOWN_GRACE_S='inf': Input should be a finite number".
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError([_error_line(item) for item in error.errors()]) from None


def _error_line(item: Any) -> str:
    field = str(item["loc"][0]) if item.get("loc") else ""
    message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
    if not field:  # a check across variables names them in its message
        return message
    name = env_name(field)
    if "input" in item and field not in _SECRET_FIELDS and not isinstance(item["input"], dict):
        return f"{name}={item['input']!r}: {message}"
    return f"{name}: {message}"


def per_model_choice(value: str) -> dict[str | None, str]:
    """`SSD_ENGINE` / `SSD_PRECISION` as {model name: value}, key None for every other model:
    "openvino" -> {None: "openvino"}; "openvino,shapes=tf" -> {None: "openvino", "shapes": "tf"};
    without a bare item every other model takes "auto".

    Raises:
        ValueError: an empty item or model name, two bare items, a model named twice.
    """
    choice: dict[str | None, str] = {}
    for item in value.split(","):
        name, _, chosen = item.rpartition("=")
        key: str | None = name.strip() if "=" in item else None
        chosen = chosen.strip()
        if not chosen or key == "":
            raise ValueError(f"expected 'VALUE' or 'VALUE,MODEL=VALUE,...', got {value!r}")
        if key in choice:
            whose = "the value of every other model" if key is None else f"model {key!r}"
            raise ValueError(f"{whose} is given twice in {value!r}")
        choice[key] = chosen
    choice.setdefault(None, "auto")
    return choice


class Settings(BaseSettings):
    """Configuration of one service process. `SSD_MAX_BATCH_SIZE=16` sets `max_batch_size`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, protected_namespaces=(), frozen=True, allow_inf_nan=False
    )

    model_path: Path | None = Field(
        default=None,
        description="A .keras model to serve; unset: the embedded default model.",
    )
    model_version: str | None = Field(
        default=None, description="Version string reported to clients; unset: file hash."
    )
    model_repository: Path | None = Field(
        default=None,
        description="A model repository DIR/<name>/<version>/model.keras (Triton layout); "
        "unset: SSD_MODEL_PATH, else the embedded models (face, shapes).",
    )
    default_model: str | None = Field(
        default=None,
        description="Model that /detect and Detect serve when a request names none; unset: "
        "face for the embedded models, else the repository's first by name.",
    )
    engine: str = Field(
        default="auto",
        description="Inference engine of every model: auto, tf, tf-xla, onnxruntime, openvino; "
        "per model: 'openvino,shapes=tf' (the bare item is every other model's).",
    )
    precision: str = Field(
        default="auto",
        description="Precision of every model's network: auto, fp32, bf16, float16, int8 (the "
        "network scripts/export.py --quantize int8 wrote beside the model); per model as "
        "SSD_ENGINE.",
    )
    engine_cache_dir: Path | None = Field(
        default=None,
        description="Converted networks of models whose folder is not writable (embedded "
        "models in a read-only site-packages); unset: <temp dir>/ssd_engines.",
    )
    allow_random_model: bool = Field(
        default=False,
        description="Serve a randomly initialised SSD7 when the embedded model files are "
        "missing (experiments only); false: a missing model stops start-up.",
    )
    repository_poll_s: float = Field(
        default=0.0,
        ge=0.0,
        description="Rescan SSD_MODEL_REPOSITORY every this many seconds and load new "
        "versions; 0: only on POST /v2/repository/... requests.",
    )
    host: str = Field(default="0.0.0.0", description="Interface both servers bind to.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0: any free).")
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="gRPC port (0: any free).")
    max_batch_size: int = Field(default=8, ge=1, le=256, description="Largest batch per pass.")
    # 0: a batch takes whatever queued while the previous one ran. Measured on CPU this beats
    # waiting (README, "Benchmark"); a positive delay trades latency for fuller batches.
    max_batch_delay_ms: float = Field(
        default=0.0, ge=0.0, le=10_000.0, description="Longest wait for a batch to fill, ms."
    )
    max_queue_size: int = Field(
        default=64, ge=1, description="Queued requests before 503 / RESOURCE_EXHAUSTED."
    )
    request_timeout_s: float = Field(
        default=10.0, gt=0.0, description="Deadline of a request without a gRPC deadline, s."
    )
    score_threshold: float = Field(
        default=0.3,
        description="Default score threshold, in [0, 1): detections scoring above it are "
        "returned (at least the model decoder's threshold).",
    )
    max_detections: int = Field(
        default=100,
        ge=1,
        description="Default detections per image (at most the model decoder's max_detections).",
    )
    max_image_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="Largest accepted encoded image, bytes."
    )
    max_image_pixels: int = Field(
        default=50_000_000, ge=1, description="Largest accepted width * height (before decode)."
    )
    max_decoded_bytes: int = Field(
        default=200_000_000,
        ge=1,
        description="Largest decoded image, width * height * bytes per pixel (before decode).",
    )
    decode_workers: int = Field(default=4, ge=1, description="Threads decoding images.")
    compute_nice: int = Field(
        default=5,
        ge=0,
        le=19,
        description="How much nicer (lower CPU priority) the compute threads run than the event "
        "loop; 0: the same (Linux only; see service.thread_priority).",
    )
    http_max_connections: int = Field(
        default=1000, ge=1, description="Open HTTP connections; more get 503 and are closed."
    )
    http_header_timeout_s: float = Field(
        default=10.0, gt=0.0, description="Longest wait for a request's complete headers, s."
    )
    http_body_timeout_s: float = Field(
        default=30.0, gt=0.0, description="Longest wait for a request's complete body, s (408)."
    )
    http_keep_alive_s: int = Field(
        default=5, ge=1, description="Idle keep-alive connections are closed after this, s."
    )
    http_max_header_bytes: int = Field(
        default=16 * 1024, ge=1024, description="Largest request line + headers, bytes (400)."
    )
    http_max_in_flight: int = Field(
        default=128,
        ge=1,
        description="HTTP requests being read, decoded, queued or computed; more get 503.",
    )
    http_max_in_flight_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1,
        description="Request body bytes held by in-flight HTTP requests; more get 503.",
    )
    grpc_stream_window: int = Field(
        default=16,
        ge=1,
        description="Items of one StreamDetect in flight; the next is read when one is answered.",
    )
    grpc_max_in_flight: int = Field(
        default=128, ge=1, description="Detection calls at once before RESOURCE_EXHAUSTED."
    )
    grpc_max_connections: int = Field(
        default=1000, ge=1, description="Open gRPC connections; more are closed at once."
    )
    grpc_max_streams_per_connection: int = Field(
        default=100, ge=1, description="Concurrent calls per HTTP/2 connection (flow control)."
    )
    shutdown_grace_s: float = Field(
        default=30.0, ge=0.0, description="Longest drain of queued requests on SIGTERM, s."
    )
    log_level: LogLevel = Field(default="INFO", description="Python logging level.")
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate (chain) for HTTPS and gRPC TLS; unset: plain."
    )
    tls_key_file: Path | None = Field(
        default=None, description="PEM private key of `tls_cert_file`."
    )
    auth_token: SecretStr | None = Field(
        default=None,
        description="Bearer token required on every endpoint but health, metrics and docs.",
    )
    docs_enabled: bool = Field(default=True, description="Serve /docs and /openapi.json.")
    grpc_reflection: bool = Field(default=True, description="Serve gRPC server reflection.")
    expose_model_config: bool = Field(
        default=True, description="Include the full model config in /model and GetModel."
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Origins allowed by CORS, comma-separated ('*': any); none: off."
    )

    @field_validator(
        "model_path",
        "model_version",
        "model_repository",
        "default_model",
        "engine_cache_dir",
        "tls_cert_file",
        "tls_key_file",
        "auth_token",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker compose passes `SSD_MODEL_PATH: ${SSD_MODEL_PATH:-}` as "" when unset.
        return None if value == "" else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(origin.strip() for origin in value.split(",") if origin.strip())
        return value

    @field_validator("score_threshold")
    @classmethod
    def _check_score_threshold(cls, value: float) -> float:
        # Imported here: ssd_core loads TensorFlow, which a bad setting should not wait for.
        from ssd_core.decoder_config import check_score_threshold

        return check_score_threshold(value)

    @field_validator("engine", "precision")
    @classmethod
    def _check_per_model(cls, value: str) -> str:
        per_model_choice(value)  # raises on a malformed list
        return value.strip()

    @model_validator(mode="after")
    def _check_engines(self) -> Settings:
        # Imported here: ssd_core loads TensorFlow, which a bad setting should not wait for.
        from ssd_core.engines import EngineUnavailableError, check_available, resolve

        engines, precisions = per_model_choice(self.engine), per_model_choice(self.precision)
        for name in sorted(set(engines) | set(precisions), key=str):
            engine, precision = self.engine_for(name)
            where = "" if name is None else f" (model {name})"
            try:
                check_available(resolve(engine, precision).engine)
            except (ValueError, EngineUnavailableError) as error:
                raise ValueError(
                    f"SSD_ENGINE={self.engine!r}, SSD_PRECISION={self.precision!r}{where}: {error}"
                ) from None
        return self

    def engine_for(self, model: str | None) -> tuple[str, str]:
        """(engine, precision) of the repository model `model` (None: any other model)."""
        engines, precisions = per_model_choice(self.engine), per_model_choice(self.precision)
        return (
            engines.get(model, engines[None]) if model is not None else engines[None],
            precisions.get(model, precisions[None]) if model is not None else precisions[None],
        )

    @field_validator("tls_cert_file", "tls_key_file")
    @classmethod
    def _check_tls_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("auth_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"a bearer token needs at least {MIN_TOKEN_CHARS} characters")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("SSD_TLS_CERT_FILE and SSD_TLS_KEY_FILE must be set together")
        return self

    @model_validator(mode="after")
    def _one_model_source(self) -> Settings:
        if self.model_path is not None and self.model_repository is not None:
            raise ValueError("set SSD_MODEL_PATH or SSD_MODEL_REPOSITORY, not both")
        return self

    @field_validator("model_repository")
    @classmethod
    def _check_repository(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @field_validator("model_path")
    @classmethod
    def _check_model_path(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_model_file(value)  # cheap checks only: nothing is opened that could block
        return value
