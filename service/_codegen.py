"""Generate the gRPC stubs in `service/_generated/` from the `.proto` files in `protos/`.

Two sets: `protos/detector.proto` (`ssd.v1.Detector`) and `protos/inference/*.proto` (the Open
Inference Protocol, package `inference`). The one codegen step: `make protos` (and `make
install`) run `python -m service._codegen`, and the gRPC servers call `ensure_generated()` on
import so a fresh clone works with `make test`. Stubs are rebuilt when missing or older than
their proto and never edited by hand; this step only adjusts protoc's output mechanically:

- protoc writes top-level imports (`import model_config_pb2`); the stubs live in a package, so
  they become relative imports;
- the `inference` messages go into a descriptor pool of their own (`service.proto_pool`), not
  protobuf's process-wide default pool. Every Open Inference Protocol client (tritonclient,
  kserve, MLServer) registers the same message names in the default pool, and protobuf refuses
  a second definition of a name, so a process that imports one of them and this server (a
  test, an in-process client) would fail to import. The wire format does not change.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
OUT_DIR = Path(__file__).resolve().parent / "_generated"
_DEFAULT_POOL = "_descriptor_pool.Default()"
_PRIVATE_POOL_IMPORT = "from service.proto_pool import OIP_POOL as _private_pool\n"


@dataclass(frozen=True)
class ProtoSet:
    """Proto files compiled together from one include directory.

    Attributes:
        include_dir: the directory their imports are relative to.
        files: file names in `include_dir`.
        private_pool: register their messages in `service.proto_pool.OIP_POOL`.
    """

    include_dir: Path
    files: tuple[str, ...]
    private_pool: bool = False

    @property
    def stems(self) -> tuple[str, ...]:
        return tuple(Path(name).stem for name in self.files)

    def outputs(self) -> tuple[str, ...]:
        """The module files protoc writes for this set."""
        return tuple(
            f"{stem}{suffix}"
            for stem in self.stems
            for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
        )


PROTO_SETS = (
    ProtoSet(PROTOS, ("detector.proto",)),
    ProtoSet(PROTOS / "inference", ("model_config.proto", "grpc_service.proto"), True),
)


def is_stale() -> bool:
    """True when a stub is missing or older than its proto (False if the protos are absent,
    as in an installed wheel that ships only the stubs)."""
    for proto_set in PROTO_SETS:
        sources = [proto_set.include_dir / name for name in proto_set.files]
        if not all(path.exists() for path in sources):
            continue
        newest = max(path.stat().st_mtime for path in sources)
        for name in proto_set.outputs():
            path = OUT_DIR / name
            if not path.exists() or path.stat().st_mtime < newest:
                return True
    return False


def generate() -> None:
    """Run protoc (from grpcio-tools) on every set and install the stubs atomically.

    Raises:
        RuntimeError: protoc failed (the message carries its exit code), or its output no
            longer has the shape the adjustments in the module docstring expect.
    """
    for proto_set in PROTO_SETS:
        _generate_set(proto_set)


def _generate_set(proto_set: ProtoSet) -> None:
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(dir=OUT_DIR) as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_set.include_dir}",
            f"-I{_well_known_protos()}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(proto_set.include_dir / name) for name in proto_set.files),
        ]
        code = protoc.main(args)
        if code != 0:
            raise RuntimeError(f"protoc failed with exit code {code} on {proto_set.files}")
        for name in proto_set.outputs():
            path = Path(tmp) / name
            text = _relative_imports(path.read_text(), proto_set.stems)
            if proto_set.private_pool and name.endswith("_pb2.py"):
                text = _private_pool(text, name)
            path.write_text(text)
        for name in proto_set.outputs():
            # os.replace is atomic, so concurrent processes never import a half-written stub.
            os.replace(Path(tmp) / name, OUT_DIR / name)
    logger.info("generated gRPC stubs in %s from %s", OUT_DIR, ", ".join(proto_set.files))


def _relative_imports(text: str, stems: tuple[str, ...]) -> str:
    """`import x_pb2 as y` -> `from . import x_pb2 as y` for the modules of one set."""
    for stem in stems:
        text = re.sub(
            rf"^import {stem}_pb2 as ", f"from . import {stem}_pb2 as ", text, flags=re.MULTILINE
        )
    return text


def _private_pool(text: str, name: str) -> str:
    """Register the file's descriptors in `service.proto_pool.OIP_POOL` (module docstring)."""
    if text.count(_DEFAULT_POOL) != 1:
        raise RuntimeError(f"protoc output {name} does not add its file to the default pool once")
    marker = "# @@protoc_insertion_point(imports)\n"
    if marker not in text:
        raise RuntimeError(f"protoc output {name} has no imports insertion point")
    text = text.replace(marker, marker + _PRIVATE_POOL_IMPORT, 1)
    return text.replace(_DEFAULT_POOL, "_private_pool", 1)


def ensure_generated() -> None:
    """Generate the stubs if they are missing or stale."""
    if is_stale():
        generate()


def _well_known_protos() -> str:
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    generate()
