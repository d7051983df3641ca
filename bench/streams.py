"""Many concurrent streams from one gevent process: `python -m bench.streams URL N` prints JSON.

Run as its own process (it monkey-patches); the benchmark parent never patches itself.
Every stream must end with a usage chunk and `data: [DONE]`; anything else is an error.
"""

from __future__ import annotations

import json
import sys
import time


def _one(url: str, body: bytes, headers: dict, state: dict) -> None:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    start = time.perf_counter()
    try:
        conn.request("POST", parts.path, body=body, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            state["errors"].append(f"HTTP {resp.status}: {resp.read()[:120]!r}")
            return
        state["open"] += 1
        state["peak"] = max(state["peak"], state["open"])
        buf, ttfc = b"", None
        try:
            while True:
                piece = resp.read1(65536)
                if not piece:
                    break
                if ttfc is None and b'"content":"' in piece.replace(b'"content": "', b'"content":"') \
                        and b'"content":""' not in piece:
                    ttfc = time.perf_counter() - start
                buf += piece
        finally:
            state["open"] -= 1
        if b"data: [DONE]" not in buf or b'"usage":{' not in buf.replace(b'"usage": {', b'"usage":{'):
            state["errors"].append("stream ended without usage or [DONE]")
            return
        state["ok"] += 1
        state["ttfc"].append(ttfc if ttfc is not None else time.perf_counter() - start)
        state["durations"].append(time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 — every failure is counted and reported, none hidden
        state["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
    finally:
        conn.close()


def run(url: str, n: int, body: bytes, auth: str) -> dict:
    """Open n streams at once and wait for all of them (bounded by a 120 s timeout)."""
    import gevent

    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if auth:
        headers["Authorization"] = auth
    state = {"ok": 0, "open": 0, "peak": 0, "errors": [], "ttfc": [], "durations": []}
    started = time.perf_counter()
    jobs = [gevent.spawn(_one, url, body, headers, state) for _ in range(n)]
    gevent.joinall(jobs, timeout=120)
    unfinished = sum(1 for j in jobs if not j.ready())
    gevent.killall(jobs, block=False)
    ttfc = sorted(state["ttfc"])
    return {
        "streams": n, "ok": state["ok"], "errors": len(state["errors"]) + unfinished,
        "error_samples": sorted(set(state["errors"]))[:5], "unfinished": unfinished,
        "peak_open": state["peak"], "wall_s": time.perf_counter() - started,
        "ttfc_p50_ms": ttfc[len(ttfc) // 2] * 1000 if ttfc else None,
        "ttfc_max_ms": ttfc[-1] * 1000 if ttfc else None,
        "duration_max_s": max(state["durations"], default=None),
    }


def main(argv: list[str]) -> None:
    """Entry point: URL N, with BODY and AUTH read from stdin as JSON (keeps keys off the command line)."""
    from gevent import monkey

    monkey.patch_all()
    url, n = argv[0], int(argv[1])
    params = json.loads(sys.stdin.read())
    print(json.dumps(run(url, n, params["body"].encode(), params.get("auth", ""))))


if __name__ == "__main__":
    main(sys.argv[1:])
