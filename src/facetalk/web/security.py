"""Who may talk to the server: one ASGI middleware in front of everything (the REST API,
the mounted studio, its file and queue routes, the schema).

- Host check (against DNS rebinding): on loopback only the loopback names are accepted.
- Cross-site check: a state-changing request (POST, PUT, PATCH, DELETE) from a browser
  page of another origin is refused, so a web page cannot drive a local server.
- Authentication, when configured: `Authorization: Bearer TOKEN` (or the studio's login
  cookie, set by /login) with --token; HTTP basic with --auth. A browser asking for a page
  without a token is sent to /login; with --auth the browser asks for the password itself.

/v1/health and the login page stay open (they tell nothing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
from urllib.parse import parse_qs, quote, urlsplit

from .config import ServerConfig

COOKIE = "facetalk_session"
OPEN_PATHS = frozenset({"/v1/health", "/login", "/logout"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def session_value(token: str) -> str:
    """The login cookie's value for a token (derived, so the token itself is not stored)."""
    return hmac.new(token.encode(), b"facetalk-studio-session", hashlib.sha256).hexdigest()


def _headers(scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers") or []:
        out[k.decode("latin-1").lower()] = v.decode("latin-1")
    return out


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep:
            out[k] = v
    return out


def _hostname(hostport: str) -> str:
    hostport = hostport.strip().lower()
    if hostport.startswith("["):
        return hostport[1:].split("]", 1)[0]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def authorised(config: ServerConfig, headers: dict[str, str]) -> bool:
    if not config.protected:
        return True
    given = headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    scheme = scheme.lower()
    if config.token:
        if scheme == "bearer" and hmac.compare_digest(value.strip().encode(), config.token.encode()):
            return True
        cookie = _cookies(headers.get("cookie", "")).get(COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), session_value(config.token).encode())
    if scheme == "basic" and config.auth is not None:
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        ok_user = hmac.compare_digest(user.encode(), config.auth[0].encode())
        ok_pass = hmac.compare_digest(password.encode(), config.auth[1].encode())
        return ok_user and ok_pass
    return False


def _wants_html(headers: dict[str, str], method: str) -> bool:
    return method == "GET" and "text/html" in headers.get("accept", "")


class SecurityMiddleware:
    """Pure ASGI (streams, SSE and uploads pass through untouched)."""

    def __init__(self, app, config: ServerConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        allowed = self.config.allowed_hosts
        if allowed is not None and _hostname(headers.get("host", "")) not in allowed:
            return await self._refuse(scope, send, 400, "this server answers only to " + ", ".join(allowed)
                                      + " (start it with --host to serve another name)")
        origin = headers.get("origin")
        if origin and (method in UNSAFE_METHODS or scope["type"] == "websocket"):
            o = urlsplit(origin)
            if o.netloc.lower() != headers.get("host", "").lower():
                return await self._refuse(scope, send, 403, "cross-site request refused: the page that sent it is "
                                          f"not served by this server ({origin})")
        if path in OPEN_PATHS:
            if path == "/login" and self.config.token:
                return await self._login(scope, receive, send, headers)
            if path == "/logout":
                return await self._logout(send)
            if path != "/v1/health":
                return await self._redirect(send, "/")
            return await self.app(scope, receive, send)
        if authorised(self.config, headers):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        if self.config.token and _wants_html(headers, method):
            target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            return await self._redirect(send, "/login?next=" + quote(target, safe=""))
        challenge = 'Bearer realm="facetalk"' if self.config.token else 'Basic realm="facetalk", charset="UTF-8"'
        return await self._json(send, 401, "authentication required: send 'Authorization: Bearer TOKEN'"
                                if self.config.token else "authentication required (HTTP basic: --auth user)",
                                [(b"www-authenticate", challenge.encode())])

    async def _refuse(self, scope, send, status: int, message: str) -> None:
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        return await self._json(send, status, message)

    @staticmethod
    async def _json(send, status: int, message: str, extra: list | None = None) -> None:
        body = json.dumps({"detail": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *(extra or [])]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _redirect(send, location: str, cookie: str | None = None) -> None:
        headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0")]
        if cookie is not None:
            headers.append((b"set-cookie", cookie.encode("latin-1")))
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _logout(self, send) -> None:
        await self._redirect(send, "/login" if self.config.token else "/",
                             f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")

    async def _login(self, scope, receive, send, headers: dict[str, str]) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        target = _safe_next(query.get("next", ["/"])[0])
        if scope.get("method") == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if len(body) > 8192:
                    return await self._json(send, 413, "login form too large")
                if not message.get("more_body"):
                    break
            form = parse_qs(body.decode("utf-8", "replace"))
            token = (form.get("token") or [""])[0].strip()
            target = _safe_next((form.get("next") or [target])[0])
            if self.config.token and hmac.compare_digest(token.encode(), self.config.token.encode()):
                cookie = f"{COOKIE}={session_value(self.config.token)}; Path=/; HttpOnly; SameSite=Strict"
                return await self._redirect(send, target, cookie)
            return await self._page(send, 401, target, "That token is not this server's: use the --token (or "
                                    "FACETALK_TOKEN) that facetalk serve was started with.")
        return await self._page(send, 200, target, None)

    @staticmethod
    async def _page(send, status: int, target: str, error: str | None) -> None:
        body = LOGIN_PAGE.format(next=html.escape(target, quote=True),
                                 error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "")
        data = body.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(data)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": data})


def _safe_next(target: str) -> str:
    """Only a path on this server (no scheme, no host, no '//'): never an open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facetalk studio: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 26rem; margin: 4rem auto; padding: 0 1rem; color: #222; }}
label {{ display: block; margin: 1rem 0 .3rem; }}
input[type=password] {{ width: 100%; padding: .5rem; font-size: 1rem; box-sizing: border-box; }}
button {{ margin-top: 1rem; padding: .5rem 1.2rem; font-size: 1rem; }}
.error {{ color: #b00020; }}
</style></head>
<body><h1>facetalk studio</h1>
<p>This server asks for its access token (the <code>--token</code> it was started with).</p>
{error}
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Sign in</button>
</form></body></html>
"""
