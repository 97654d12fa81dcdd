"""A plain ASGI app for uvicorn; the body names the process that answered."""

import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok pid=%d\n" % os.getpid()})
