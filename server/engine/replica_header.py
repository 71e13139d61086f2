"""An ASGI middleware loaded into each vLLM engine (`--middleware`): every answer names the
replica that gave it in `x-workbench-replica`, which vllm-router passes back to the gateway.

The router does not say which worker it chose; this header is how the gateway (its usage rows,
`/health`, the UI's stats) knows. Standard library only: it runs inside the engine's virtualenv.
"""

import socket

HEADER = b"x-workbench-replica"


def replica_name(port: int) -> str:
    """`host:port` of this engine as its machine names itself."""
    return f"{socket.gethostname()}:{port}"


class ReplicaHeader:
    """Adds `x-workbench-replica: host:port` to every HTTP response."""

    def __init__(self, app):
        self.app = app
        self._value: bytes | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._value is None:
            server = scope.get("server") or ("", 0)
            self._value = replica_name(server[1]).encode()
        value = self._value

        async def named_send(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (HEADER, value)]}
            await send(message)

        await self.app(scope, receive, named_send)
