"""nginx in front of the processes: its config, rendered from nginx.conf.template, and argv."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from string import Template

import orjson

from server.gateway import errors

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
# What /v1 answers when nginx reaches no API process (the message a worker gives when the
# engine is down would blame the engine).
UNAVAILABLE = errors.service_unavailable("The API is not available; retry in a moment.")
NGINX = "nginx"


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_config(
    host: str,
    port: int,
    ui_port: int,
    api_ports: list[int],
    run_dir: Path,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> str:
    """The nginx config: public `host:port` (HTTPS with a cert) → loopback processes."""
    tls = ""
    listen = listen_address(host, port)
    if tls_cert is not None and tls_key is not None:
        listen += " ssl"
        tls = (
            f"        ssl_certificate {Path(tls_cert).resolve()};\n"
            f"        ssl_certificate_key {Path(tls_key).resolve()};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        )
    # Run as root, nginx would hand its workers to `nobody`, who cannot enter a private data
    # dir; they run as the user the whole host runs as (it needs no more than the app).
    user = pwd.getpwuid(os.geteuid()).pw_name
    return Template(TEMPLATE.read_text()).substitute(
        user_line=f"user {user};" if os.geteuid() == 0 else "",
        run_dir=run_dir.resolve(),
        api_servers="\n".join(
            f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in api_ports
        ),
        ui_address=f"127.0.0.1:{ui_port}",
        listen=listen,
        tls_lines=tls,
        api_unavailable=_quoted(UNAVAILABLE.body()),
        anthropic_unavailable=_quoted(UNAVAILABLE.body("anthropic")),
    )


def _quoted(body: dict) -> str:
    """JSON for inside nginx's single quotes, which have no escape for `'`, `\\` or `$`."""
    text = orjson.dumps(body).decode()
    assert not set(text) & set("'\\$"), text
    return text


def write_config(path: Path, text: str) -> Path:
    """Write the config and the temp dirs it names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (path.parent / "nginx-tmp" / sub).mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def nginx_argv(config: Path) -> list[str]:
    """nginx in the foreground (no daemon: its parent supervises it), logging to stderr."""
    binary = shutil.which(NGINX) or f"/usr/sbin/{NGINX}"
    return [
        binary,
        "-e",
        "stderr",
        "-p",
        str(config.parent.resolve()),
        "-c",
        str(config.resolve()),
        "-g",
        "daemon off;",
    ]
