"""`bench/http_clients.py`: the upstream client against urllib3 and geventhttpclient's public API, side by side.

kyma/providers/http.py uses three geventhttpclient internals; this is the measurement that keeps
them. One keep-alive gevent server on 127.0.0.1 answers every POST with a fixed chat completion;
each round calls kyma's Origin, urllib3 2.x and geventhttpclient's HTTPClient in turn (rotating
who goes first), under gevent's monkey-patching as in the gateway, and reads each client's CPU.

    .venv/bin/python -m bench.http_clients --rounds 3000
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from kyma import procs  # noqa: E402

BODY = json.dumps({"id": "x", "object": "chat.completion", "usage": {"prompt_tokens": 5, "completion_tokens": 40},
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "hello " * 40}}]}).encode()
REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


def serve(fd: int) -> None:
    """The upstream: answers each request on a kept-alive connection with REPLY."""
    from gevent.server import StreamServer

    def handle(sock, _addr):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(rest) < length:
                rest += sock.recv(65536)
            buf = rest[length:]
            sock.sendall(REPLY)

    StreamServer(socket.socket(fileno=fd), handle).serve_forever()


def clients(port: int) -> dict:
    """One call per client, each returning (status, body)."""
    import urllib3
    from geventhttpclient import HTTPClient
    from geventhttpclient.url import URL

    from kyma.providers.http import Origin

    base = f"http://127.0.0.1:{port}/v1"
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi " * 50}]}).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench", "Accept": "application/json"}
    origin = Origin(base, size=10, connect_timeout=3)
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=10, retries=False,
                                      timeout=urllib3.Timeout(connect=3, read=10))
    public = HTTPClient.from_url(URL(base), concurrency=10, connection_timeout=3, network_timeout=10)

    def kyma():
        resp = origin.post("/chat/completions", body, headers, 10)
        return resp.status, b"".join(resp.pieces(10))

    def urllib3_pool():
        resp = pool.urlopen("POST", "/v1/chat/completions", body=body, headers=headers, preload_content=True)
        return resp.status, resp.data

    def geventhttpclient_public():
        resp = public.post("/v1/chat/completions", body=body, headers=headers)
        data = resp.read()
        resp.release()
        return resp.status_code, data

    return {"kyma Origin": kyma, "urllib3 2.x": urllib3_pool, "geventhttpclient HTTPClient": geventhttpclient_public}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    listener = procs.listen()  # bound here and inherited: the server cannot lose its port to a race
    port, fd = listener.getsockname()[1], listener.fileno()
    server = subprocess.Popen([sys.executable, "-m", "bench.http_clients", "--serve", str(fd)], cwd=procs.ROOT,
                              pass_fds=(fd,))
    listener.close()
    try:
        calls = clients(port)
        for call in calls.values():  # warm up: connections open, code paths hot
            for _ in range(50):
                status, data = call()
                assert status == 200 and data == BODY
        wall = {name: [] for name in calls}
        cpu = dict.fromkeys(calls, 0.0)
        order = list(calls)
        for _ in range(args.rounds):
            order = order[1:] + order[:1]
            for name in order:
                c0, t0 = time.process_time(), time.perf_counter()
                calls[name]()
                wall[name].append(time.perf_counter() - t0)
                cpu[name] += time.process_time() - c0
        for name, times in wall.items():
            times.sort()
            print(f"{name:28s} p50 {times[len(times) // 2] * 1e6:6.0f} µs   p99 {times[int(len(times) * .99)] * 1e6:6.0f} µs"
                  f"   client CPU {cpu[name] / args.rounds * 1e6:6.0f} µs/request")
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
