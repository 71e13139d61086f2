"""HTTP sessions to the engine: connections kept alive between calls, without the race that
keeping them brings.

vLLM's server closes a connection idle for `VLLM_HTTP_TIMEOUT_KEEP_ALIVE` seconds (5 by
default). A client that keeps idle connections longer (aiohttp's default is 15 s) now and then
sends its next request on a connection the engine is closing that very moment, and the call
fails before any answer ("Can not write request body", "Server disconnected"). So:

- a pooled connection is dropped one second before the engine would drop it;
- a call whose connection breaks before any answer is sent once more. aiohttp does that only
  for idempotent methods; the engine's POSTs (generate, tokenize) change no state, so a second
  attempt costs at most the compute of the first. A dead engine refuses the second connection,
  which is still the caller's 503.
"""

from __future__ import annotations

import logging
import os

import aiohttp
from yarl import URL

log = logging.getLogger(__name__)

# vLLM's own variable and default: the engine and the app read the same environment.
ENGINE_IDLE_SECONDS = float(os.environ.get("VLLM_HTTP_TIMEOUT_KEEP_ALIVE") or 5)
KEEPALIVE_SECONDS = max(ENGINE_IDLE_SECONDS - 1.0, 0.5)
# A connection that broke under a call before any answer came (not: no connection at all).
_BROKEN = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def session(timeout: aiohttp.ClientTimeout, **options) -> aiohttp.ClientSession:
    """A session whose pool lets idle connections go before the engine closes them."""
    connector = aiohttp.TCPConnector(
        limit=1000, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS
    )
    return aiohttp.ClientSession(connector=connector, timeout=timeout, **options)


async def post(
    client: aiohttp.ClientSession, url: URL | str, data: bytes, headers: dict[str, str]
) -> aiohttp.ClientResponse:
    """`client.post`, sent once more if its connection broke before the answer's headers.
    The caller releases the response (`async with` it, or `release()`/`close()`)."""
    try:
        return await client.post(url, data=data, headers=headers)
    except aiohttp.ClientConnectorError:
        raise  # nothing was sent: the engine is not there
    except _BROKEN as exc:
        log.info("engine connection broke before an answer (%r); sending the call again", exc)
        return await client.post(url, data=data, headers=headers)
