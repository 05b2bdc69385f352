"""`facetalk serve`: uvicorn with the app, and job workers so submitted jobs run.

Workers are child processes (facetalk.jobs.worker.Pool: `facetalk worker` each, one
restarted when it dies), so a render never competes with the web server for the GIL and a
crashed render cannot take the server down. On Ctrl-C or SIGTERM the server stops taking
requests, the workers give their running jobs back to the queue, and everything exits.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from .config import ServerConfig


class Workers:
    """N `facetalk worker` processes over the config's home, run by a thread."""

    def __init__(self, config: ServerConfig, on_event: Callable[[str], None] | None = None) -> None:
        from ..jobs.worker import Pool

        self.pool = Pool(config.home, config.workers, poll_s=0.5, quiet=True, on_event=on_event) if config.workers else None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.pool is not None:
            self.thread = threading.Thread(target=self.pool.run, name="facetalk-workers", daemon=True)
            self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self.pool is not None:
            self.pool.stop()
        if self.thread is not None:
            self.thread.join(timeout)


def serve(config: ServerConfig, echo: Callable[[str], None] | None = None, log_level: str = "warning") -> None:
    """Run the server until Ctrl-C or SIGTERM."""
    import uvicorn

    from .app import STUDIO_PATH, create_app

    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    app = create_app(config)
    workers = Workers(config, on_event=echo)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                                           access_log=False, server_header=False, timeout_graceful_shutdown=5,
                                           ws="auto"))  # websockets (the web extra): /v1/live
    workers.start()
    auth = ("token required (--token)" if config.token else "HTTP basic auth (--auth)" if config.auth
            else "open to this machine only")
    echo(f"facetalk studio: {config.url(STUDIO_PATH + '/')}   REST API: {config.url('/v1')}   "
         f"schema: {config.url('/openapi.json')}")
    echo(f"home {config.home}; {config.workers} worker{'s' if config.workers != 1 else ''}; {auth}; "
         f"uploads up to {config.max_upload_mb:.0f} MB" + ("; URLs fetched" if config.allow_urls else "")
         + ". Ctrl-C stops.")
    try:
        server.run()
    finally:
        workers.stop()
        app.state.service.tasks.join(timeout=1.0)
        app.state.service.close()
    if not server.started:
        from .config import ConfigError

        raise ConfigError(f"could not listen on {config.host}:{config.port} (in use? choose another with --port)")


__all__ = ["Workers", "serve"]
