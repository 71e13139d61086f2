"""Runtime configuration: one pydantic-settings object, read from the environment."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVED_MODEL_NAME = "qwen3"


class Settings(BaseSettings):
    """Every knob of the host; env var names are the contract in docs/ARCHITECTURE.md."""

    model_config = SettingsConfigDict(env_prefix="WORKBENCH_", extra="ignore")

    vllm_api_key: str | None = Field(default=None, validation_alias=AliasChoices("VLLM_API_KEY"))
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path("./data")
    profile: Literal["auto", "h200x4", "cpu", "external"] = "auto"
    upstream_url: str | None = None
    engine_port: int = Field(default=8001, ge=1, le=65535)
    rpm: int = Field(default=60, ge=1)
    tpm: int = Field(default=100_000, ge=1)
    max_concurrent: int = Field(default=10, ge=1)
    max_context: int | None = Field(default=None, ge=1)
    # Beyond the contract table: limits a serious host needs, with safe defaults.
    # A PDF travels base64-encoded inside JSON (4/3 of its size), so the body cap sits above it.
    max_pdf_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    max_body_bytes: int = Field(default=140 * 1024 * 1024, ge=1024)
    tokenizer_path: Path | None = None
    # Replicas (README "Several engines"): engine URLs behind vllm-router, separated by
    # commas or spaces; where an engine listens; the engine secret the gateway sends to them.
    upstream_urls: str | None = None
    engine_host: str = "127.0.0.1"
    engine_key: str | None = None
    router_port: int = Field(default=8002, ge=1, le=65534)

    @property
    def replica_urls(self) -> list[str]:
        """The engines behind the router (WORKBENCH_UPSTREAM_URLS), without /v1; empty
        without replicas."""
        raw = (self.upstream_urls or "").replace(",", " ").split()
        return [url.rstrip("/").removesuffix("/v1") for url in raw]

    # Many processes (README "More than one process"): N API workers behind nginx, the UI in
    # its own process, the limits shared in Redis (started for them when no URL is given).
    api_workers: int = Field(default=1, ge=1, le=64)
    redis_url: str | None = None
    # HTTPS for the UI and /v1: nginx terminates it when there is one, else uvicorn itself.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> "Settings":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("WORKBENCH_TLS_CERT and WORKBENCH_TLS_KEY go together: set both")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @field_validator("tokenizer_path")
    @classmethod
    def _tokenizer_files_exist(cls, path: Path | None) -> Path | None:
        if path is not None and not (path / "tokenizer.json").is_file():
            raise ValueError(
                f"{path} has no tokenizer.json (it must name a folder holding the "
                "served model's tokenizer files)"
            )
        return path

    @property
    def upstream(self) -> str:
        """Base URL of the vLLM server the gateway forwards to (without /v1): the router in
        front of the replicas when there are several."""
        if self.replica_urls:
            return f"http://127.0.0.1:{self.router_port}"
        if self.upstream_url:
            return self.upstream_url.rstrip("/").removesuffix("/v1")
        return f"http://127.0.0.1:{self.engine_port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "workbench.db"

    @property
    def self_url(self) -> str:
        """Base URL of our own /v1, used by the UI as its API client."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/v1"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call get_settings.cache_clear() after changing env."""
    return Settings()


def settings_or_exit(prog: str) -> Settings:
    """The process-wide settings; a value the environment gets wrong ends the process with one
    line naming the variable (as launch.sh's other refusals do), not a traceback."""
    try:
        return get_settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            variable = "VLLM_API_KEY" if field == "vllm_api_key" else f"WORKBENCH_{field.upper()}"
            problems.append(f"{variable}: {error['msg'].removeprefix('Value error, ')}")
        raise SystemExit(f"{prog}: error: " + "; ".join(problems)) from None
