"""The UI's only way to the model: our own /v1, with the signed-in key, via the openai SDK.

Going through /v1 (not straight to vLLM) gives the browser the same auth, rate limits, usage
accounting and errors as any SDK user. This module also turns the SDK's exceptions into
sentences a person can act on.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import openai

log = logging.getLogger(__name__)

# Prefill of a very long document can take minutes before the first byte: the read timeout
# (the longest silence between two chunks) is generous; connecting must be quick.
TIMEOUT = openai.Timeout(900.0, connect=10.0)


class ApiClient:
    """One AsyncOpenAI client for the process; each request carries the caller's own key."""

    def __init__(self, base_url: str, tls_cert: Path | None = None):
        self.base_url = base_url
        self.tls_cert = tls_cert  # the certificate our own server presents, when on HTTPS
        self._client: openai.AsyncOpenAI | None = None

    def for_key(self, api_key: str) -> openai.AsyncOpenAI:
        """A client that authenticates as `api_key` (it shares the connection pool)."""
        if self._client is None:
            # Created lazily, inside the server's event loop; no retries: a 429 must reach the
            # person with its wait, not be retried silently behind a spinner.
            http_client = None
            if self.tls_cert is not None:
                http_client = openai.DefaultAsyncHttpxClient(
                    verify=trust_only(self.tls_cert), timeout=TIMEOUT)
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key="unset", max_retries=0, timeout=TIMEOUT,
                http_client=http_client,
            )
        return self._client.with_options(api_key=api_key)


def trust_only(cert: Path) -> ssl.SSLContext:
    """TLS to our own server on loopback: trust exactly the certificate it presents (a
    self-signed one too), whatever name it was issued for."""
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def _message(exc: openai.APIError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    text = body.get("message") or exc.message or type(exc).__name__
    return str(text).strip().rstrip(".")


def _retry_after(exc: openai.APIStatusError) -> str | None:
    value = exc.response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return value
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def describe_error(exc: BaseException) -> str:
    """A readable sentence for an error of a /v1 call (logged in full for the host)."""
    if isinstance(exc, openai.RateLimitError):
        wait = _retry_after(exc)
        when = f"Try again in {wait}." if wait else "Try again shortly."
        return f"Rate limit reached ({_message(exc)}). {when}"
    if isinstance(exc, openai.BadRequestError) and exc.code == "context_length_exceeded":
        return (
            f"Too long for the model's context: {_message(exc)}. Start a new conversation, "
            "remove some history, or lower max tokens."
        )
    if isinstance(exc, openai.AuthenticationError):
        return f"The API key was rejected ({_message(exc)}). Sign out and sign in with a valid key."
    if isinstance(exc, openai.PermissionDeniedError):
        return f"This key may not do that: {_message(exc)}."
    if isinstance(exc, openai.APIStatusError) and exc.status_code in (502, 503, 504):
        return f"The model engine is not available right now ({exc.status_code}): {_message(exc)}."
    if isinstance(exc, openai.APIStatusError):
        return f"The request failed ({exc.status_code}): {_message(exc)}."
    if isinstance(exc, openai.APITimeoutError):
        return "The model did not answer in time (timed out). Try again, or ask for less."
    if isinstance(exc, openai.APIConnectionError):
        return f"Could not reach the workbench API at {exc.request.url.host}: {exc.message}"
    if isinstance(exc, openai.APIError):
        # An error event inside the stream (the engine failed mid-answer).
        return f"The engine stopped with an error: {_message(exc)}."
    log.error("unexpected error while streaming an answer", exc_info=exc)
    return f"Unexpected error ({type(exc).__name__}): {exc}"
