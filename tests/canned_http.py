"""An httpx client that answers every request itself, for SDKs parsing canned bodies in process."""

from __future__ import annotations

import httpx2


def answering(body: bytes, content_type: str) -> httpx2.Client:
    """An SDK's http_client whose every request gets 200 with this body (no socket, no network)."""
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": content_type})
    return httpx2.Client(transport=httpx2.MockTransport(handler))
