"""Generate the gRPC stubs in `service/_generated/` from `protos/detector.proto`.

The one codegen step: `make protos` (and `make install`) run `python -m service._codegen`, and
`service.grpc_server` calls `ensure_generated()` on import so a fresh clone works with
`make test`. Stubs are rebuilt when missing or older than the proto and never edited by hand.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "protos" / "detector.proto"
OUT_DIR = Path(__file__).resolve().parent / "_generated"
OUTPUTS = ("detector_pb2.py", "detector_pb2.pyi", "detector_pb2_grpc.py")


def is_stale() -> bool:
    """True when a stub is missing or older than the proto (False if the proto is absent,
    as in an installed wheel that ships only the stubs)."""
    if not PROTO.exists():
        return False
    proto_mtime = PROTO.stat().st_mtime
    for name in OUTPUTS:
        path = OUT_DIR / name
        if not path.exists() or path.stat().st_mtime < proto_mtime:
            return True
    return False


def generate() -> None:
    """Run protoc (from grpcio-tools) and install the stubs atomically.

    Raises:
        RuntimeError: protoc failed (the message carries its exit code).
    """
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(dir=OUT_DIR) as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO.parent}",
            f"-I{_well_known_protos()}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(PROTO),
        ]
        code = protoc.main(args)
        if code != 0:
            raise RuntimeError(f"protoc failed with exit code {code} on {PROTO}")
        grpc_stub = Path(tmp) / "detector_pb2_grpc.py"
        # protoc writes a top-level import; the stubs live in a package.
        text = grpc_stub.read_text().replace(
            "import detector_pb2 as detector__pb2", "from . import detector_pb2 as detector__pb2"
        )
        grpc_stub.write_text(text)
        for name in OUTPUTS:
            # os.replace is atomic, so concurrent processes never import a half-written stub.
            os.replace(Path(tmp) / name, OUT_DIR / name)
    logger.info("generated gRPC stubs in %s from %s", OUT_DIR, PROTO)


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
