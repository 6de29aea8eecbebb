"""Listening: one aiohttp runner setup for the gateway's S3 port and a node's internal API."""
from __future__ import annotations

from aiohttp import web


async def serve(app: web.Application, host: str, port: int, ssl_context=None) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True, backlog=1024, ssl_context=ssl_context).start()
    return runner
