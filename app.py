"""WSGI entry point: `gunicorn -k gevent app:app` (no --preload: gevent patches first)."""

from kyma.capacity import ensure_fd_limit
from kyma.factory import create_app

app = create_app()
# Each worker raises its own open-file limit: gunicorn started by hand (docs/deploy.md) is covered too.
ensure_fd_limit(app.extensions["kyma"].settings.worker_connections)
