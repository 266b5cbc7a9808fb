"""gRPC stubs generated from protos/*.proto by service/_codegen.py (not committed)."""
