"""HTML pages, htmx fragments and the playground websocket."""

from flask import Flask


def register_web(app: Flask) -> None:
    """Attach the web blueprints (placeholder until the web issue lands)."""
    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}
