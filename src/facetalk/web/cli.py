"""`facetalk serve`, registered by facetalk.cli."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from .config import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT, ConfigError, ServerConfig, parse_auth


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e} (choose another --port, "
                          "or stop what uses it)") from None


@click.command("serve")
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on; another than loopback needs --token or --auth.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--token", envvar="FACETALK_TOKEN", default=None,
              help="Require 'Authorization: Bearer TOKEN' (the studio asks for it once) [env FACETALK_TOKEN].")
@click.option("--auth", envvar="FACETALK_AUTH", default=None, metavar="USER:PASS",
              help="Require HTTP basic authentication [env FACETALK_AUTH].")
@click.option("--max-upload-mb", type=click.IntRange(1, 1_000_000), default=DEFAULT_MAX_UPLOAD_MB, show_default=True,
              help="Largest upload accepted, per request.")
@click.option("--workers", type=click.IntRange(0, 64), default=1, show_default=True,
              help="Job worker processes to start (0: run 'facetalk worker' yourself).")
@click.option("--live-sessions", type=click.IntRange(0, 16), default=1, show_default=True,
              help="Live avatar sessions at once (/v1/live); one more is refused with a message. 0: none.")
@click.option("--allow-urls", is_flag=True, help="Fetch http(s) URLs given as face, audio or footage.")
@click.option("--home", type=click.Path(file_okay=False), default=None,
              help="Facetalk home (jobs.db, outputs/, identities/, uploads/) [default: $FACETALK_HOME, else the user data folder].")
@click.option("--log-level", type=click.Choice(["error", "warning", "info", "debug"]), default="warning",
              show_default=True, help="How much the web server logs.")
def serve_command(host, port, token, auth, max_upload_mb, workers, live_sessions, allow_urls, home,
                  log_level) -> None:
    """Start the web studio and the REST API on this machine, with job workers.

    The studio is at http://HOST:PORT/studio/, the API at /v1 (schema at /openapi.json).
    Listens on 127.0.0.1 only unless --host says otherwise, and then only with --token or
    --auth. Nothing leaves the machine: no analytics, no update checks, no URL is fetched
    unless --allow-urls.
    """
    from ..home import facetalk_home
    from .server import serve

    config = ServerConfig(home=Path(home).expanduser() if home else facetalk_home(), host=host, port=port,
                          token=token or None, auth=parse_auth(auth), max_upload_bytes=max_upload_mb * 1024 * 1024,
                          workers=workers, allow_urls=allow_urls, live_sessions=live_sessions)
    config.check()
    _check_port(host, port)
    serve(config, echo=lambda line: click.echo(line, err=True), log_level=log_level)


__all__ = ["serve_command"]
