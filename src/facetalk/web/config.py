"""What a `facetalk serve` server is told: where its home is, who may use it, what it accepts.

The one object the web layer keeps (everything else lives in the job store, the identity
registry and the files under the home). Built by the CLI, or by a test, and handed to
facetalk.web.app.create_app explicitly.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FacetalkError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 500
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class ConfigError(FacetalkError):
    """A server option that is wrong or unsafe (the CLI prints it as one line, exit code 2)."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost': addresses no other machine can reach."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """'user:pass' -> ("user", "pass"); None -> None. The password may contain ':'."""
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth must be USER:PASSWORD, both not empty (e.g. --auth ana:correct-horse)")
    return user, password


@dataclass(frozen=True)
class ServerConfig:
    """home: the facetalk home (jobs.db, outputs/, identities/, uploads/). token: the
    bearer token every request must carry (or the studio's login cookie); auth: (user,
    password) for HTTP basic; neither: open, allowed on loopback only. allowed_hosts: Host
    header names accepted (None: any), against DNS rebinding; by default the loopback
    names when bound to loopback."""

    home: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    auth: tuple[str, str] | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    workers: int = 1
    allow_urls: bool = False
    allowed_hosts: tuple[str, ...] | None = field(default=None)
    poll_s: float = 0.25  # how often live progress (SSE, the studio) looks at the store
    live_sessions: int = 1  # live avatar sessions at once (facetalk.web.live); 0: none

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).expanduser().absolute())
        if self.allowed_hosts is None and is_loopback(self.host):
            object.__setattr__(self, "allowed_hosts", LOOPBACK_NAMES)

    @property
    def protected(self) -> bool:
        return bool(self.token) or self.auth is not None

    @property
    def max_upload_mb(self) -> float:
        return self.max_upload_bytes / (1024 * 1024)

    def check(self) -> None:
        """Raise ConfigError for an unsafe or contradictory configuration."""
        if self.token is not None and self.auth is not None:
            raise ConfigError("give --token or --auth, not both")
        if self.token is not None and len(self.token) < 8:
            raise ConfigError("--token must be at least 8 characters (e.g. one from 'python -c \"import secrets; "
                              "print(secrets.token_urlsafe())\"')")
        if not self.protected and not is_loopback(self.host):
            raise ConfigError(f"refusing to listen on {self.host} without --token or --auth: anyone who can reach "
                              "this machine could use the server; add one, or leave --host at 127.0.0.1")
        if self.max_upload_bytes < 1024 * 1024:
            raise ConfigError("--max-upload-mb must be at least 1")
        if not 0 <= self.workers <= 64:
            raise ConfigError("--workers must be 0 to 64")
        if not 0 <= self.live_sessions <= 16:
            raise ConfigError("--live-sessions must be 0 to 16")
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port {self.port} is out of range (1 to 65535)")

    def url(self, path: str = "/") -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}{path}"


def new_token() -> str:
    return secrets.token_urlsafe(24)


__all__ = ["ConfigError", "ServerConfig", "is_loopback", "new_token", "parse_auth"]
