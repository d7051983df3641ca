"""WSGI entry point: `gunicorn -k gevent app:app` (no --preload: gevent patches first)."""

from kyma.factory import create_app

app = create_app()
