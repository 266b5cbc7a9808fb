"""The SSD detection service: HTTP (FastAPI) and gRPC (grpc.aio) over one dynamic batcher.

Run it with `ssd-serve` or `python -m service`; configure it with `SSD_*` environment variables
(`service.settings.Settings`). Importing this package loads nothing heavy.
"""
