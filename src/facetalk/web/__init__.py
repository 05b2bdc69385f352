"""`facetalk serve`: a web studio for people and a REST API for programs, over the job
queue, on one local server.

    from facetalk.web import ServerConfig, create_app
    app = create_app(ServerConfig(home=path))          # a FastAPI app: /v1, /studio, /openapi.json

Modules: config (ServerConfig, the safety checks), security (host, cross-site and auth
checks in front of everything), uploads (streamed, size-limited, server-named files),
service (what the API and the studio both do), api (/v1), studio (Gradio), tasks
(identity creation in the background), app (create_app), server (uvicorn and job
workers), cli (`facetalk serve`).

Needs the `web` extra: pip install 'facetalk[web]'.
"""

from .config import ServerConfig


def create_app(config: ServerConfig, **kwargs):
    from .app import create_app as _create_app

    return _create_app(config, **kwargs)


__all__ = ["ServerConfig", "create_app"]
