"""The server's app: create_app(config) -> FastAPI, with the REST API at /v1, the studio
(Gradio) at /studio, the schema at /openapi.json, and / sending browsers to the studio.

Nothing here talks to the internet: Gradio's analytics and update check are off, the
interactive API docs (which load from a CDN) are not served, the studio's page loads
only from this server.
"""

from __future__ import annotations

import os

from .. import __version__
from ..errors import FacetalkError
from .config import ServerConfig
from .security import SecurityMiddleware
from .service import Service, error_status

STUDIO_PATH = "/studio"


def quiet_gradio_environment(config: ServerConfig) -> None:
    """Before gradio is imported: no analytics, no update check, no telemetry of the hub
    client, its cache under the home unless GRADIO_TEMP_DIR says otherwise."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(config.home / "web" / "gradio"))


def create_app(config: ServerConfig, service: Service | None = None, studio: bool = True):
    """The FastAPI app of a server with this config (checked first: an unsafe one raises
    ConfigError). service: an existing Service (a test's); studio=False leaves the Gradio
    studio out (faster, for API-only tests)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, RedirectResponse

    from .api import api_router

    config.check()
    service = service or Service(config)
    app = FastAPI(title="facetalk", version=__version__, docs_url=None, redoc_url=None,
                  description="Talking-head video on your own computer: queue renders, follow them, download them; "
                              "learn identities from footage. Authenticate with 'Authorization: Bearer TOKEN' when the "
                              "server was started with --token (HTTP basic with --auth).")
    app.state.service = service

    @app.exception_handler(FacetalkError)
    async def facetalk_error(request: Request, e: FacetalkError) -> JSONResponse:
        return JSONResponse({"detail": " ".join(str(e).split())}, status_code=error_status(e))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        parts = []
        for err in e.errors()[:3]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")) or "request"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    app.include_router(api_router(service))
    from .live import LiveHub, live_router

    app.state.live = LiveHub(config.live_sessions)
    app.include_router(live_router(service, app.state.live))

    if studio:
        @app.get("/", include_in_schema=False)
        def root() -> RedirectResponse:
            return RedirectResponse(STUDIO_PATH + "/", status_code=307)

        mount_studio(app, service)
    app.add_middleware(SecurityMiddleware, config=config)
    return app


def mount_studio(app, service: Service) -> None:
    quiet_gradio_environment(service.config)
    import gradio as gr

    from ..jobs.outputs import outputs_dir
    from .service import preview_dir
    from .studio import CSS, build_studio

    outputs = outputs_dir(service.home)
    outputs.mkdir(parents=True, exist_ok=True)
    preview = preview_dir(service.home)
    preview.mkdir(parents=True, exist_ok=True)
    demo = build_studio(service)
    gr.mount_gradio_app(app, demo, path=STUDIO_PATH, allowed_paths=[str(outputs), str(preview)],
                        max_file_size=service.config.max_upload_bytes, ssr_mode=False, mcp_server=False,
                        footer_links=[], run_history=False, enable_monitoring=False, pwa=False, css=CSS,
                        show_error=True, theme=gr.themes.Default())


__all__ = ["STUDIO_PATH", "create_app", "quiet_gradio_environment"]
