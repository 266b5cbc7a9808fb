"""gRPC stubs generated from protos/detector.proto by service/_codegen.py (not committed)."""
