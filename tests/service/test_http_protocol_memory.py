"""A closed HTTP connection is freed by reference counting, not left to the cyclic collector:
a full collection over a flood's closed connections stalled the event loop ~0.1 s."""

from __future__ import annotations

import asyncio
import gc
import weakref

from uvicorn.server import ServerState

from service.http_protocol import uvicorn_config
from tests.service.conftest import make_settings


async def plain_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def serve_and_close(requests: int) -> list[weakref.ref]:
    """Serve `requests` keep-alive requests on one connection, close it; weak references to
    the connection's protocol objects."""
    config = uvicorn_config(plain_app, make_settings(), log_level="warning", access_log=False)
    config.load()
    state = ServerState()
    protocols: list[weakref.ref] = []

    def factory():
        protocol = config.http_protocol_class(config=config, server_state=state, app_state={})
        protocols.append(weakref.ref(protocol))
        return protocol

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(requests):
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"ok")
    writer.close()
    await writer.wait_closed()
    for _ in range(20):  # the server side notices the close
        await asyncio.sleep(0.01)
    server.close()
    await server.wait_closed()
    return protocols


def test_a_closed_connection_needs_no_cyclic_collection():
    gc.collect()
    gc.disable()
    try:
        protocols = asyncio.run(serve_and_close(requests=3))
        alive = [ref for ref in protocols if ref() is not None]
    finally:
        gc.enable()
    assert len(protocols) == 1
    assert alive == []
