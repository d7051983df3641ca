"""CPU of the stream relay itself, in one process: `python -m bench.relay_cost [--chunks 200] [--profile]`.

Runs real streamed chat requests through the pipeline (admission, the upstream HTTP response parser,
SSE decoding, the relay, OpenAI framing, coalescing and gunicorn's chunked writes) against an
upstream and a client made of in-memory sockets, so nothing waits and no other process shares the
measurement: the figures are the gateway's own Python per stream start and per relayed chunk,
repeatable on a busy machine. Sockets, the event loop and the WSGI server's request parsing are
not in them (bench/streams.py measures the whole).
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

from gunicorn.util import write_chunk

MODEL = "qwen-3-32b"
HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n")


@functools.lru_cache(maxsize=None)
def sse_events(n: int) -> tuple[bytes, ...]:
    """The upstream's body, one HTTP chunk per SSE event (as the peer harness's upstream frames them)."""
    base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1700000000, "model": "up-model",
            "system_fingerprint": "fp_up"}
    out = []
    for i in range(n):
        delta = {"content": f"tok{i} "}
        if i == 0:
            delta["role"] = "assistant"
        ev = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None,
                                  "finish_reason": "stop" if i == n - 1 else None}])
        out.append(b"data: " + json.dumps(ev, separators=(",", ":")).encode() + b"\n\n")
    out.append(b"data: " + json.dumps(dict(base, choices=[], usage={
        "prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n})).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return tuple([b"%x\r\n" % len(e) + e + b"\r\n" for e in out[:-1]]
                 + [b"%x\r\n" % len(out[-1]) + out[-1] + b"\r\n0\r\n\r\n"])


class MemorySocket:
    """An upstream connection whose reads return one prepared piece each (never waits)."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = list(reversed(pieces))

    def settimeout(self, _):
        pass

    def recv(self, _size):
        return self.pieces.pop() if self.pieces else b""

    def fileno(self):
        return -1


class Pool:
    def return_socket(self, sock):
        pass

    def release_socket(self, sock):
        pass


class Pending:
    """Origin.start's result, answered at once from memory."""

    def __init__(self, chunks: int):
        self.chunks = chunks

    def wait(self, timeout):
        from kyma.providers.http import Response

        return Response(MemorySocket(sse_events(self.chunks)), Pool(), HEAD)

    def close(self):
        pass


class Adapter:
    """The OpenAI-compatible adapter's stream(), on a memory upstream."""

    def __init__(self, chunks: int):
        self.chunks = chunks

    def stream(self, route, body, headers, api_key, **_):
        from kyma.providers.openai_compat import OpenAIStream

        json.dumps(body).encode()  # what the real adapter encodes and sends
        return OpenAIStream(route, Pending(self.chunks), 60.0)


class Sink:
    """The client connection: counts what gunicorn's chunked writes would send."""

    def __init__(self):
        self.writes = self.bytes = 0

    def sendall(self, data: bytes) -> None:
        self.writes += 1
        self.bytes += len(data)


def one_stream(rt, principal, chunks: int, sink: Sink) -> None:
    from kyma.api.chat import openai_sse
    from kyma.api.sse import coalesced
    from kyma.chat.admission import prepare
    from kyma.chat.call import ChatCall
    from kyma.chat.stream import ChatStream

    call = ChatCall("chat", body={"model": MODEL, "stream": True, "max_tokens": 4 * chunks,
                                  "messages": [{"role": "user", "content": "count"}]})
    call.principal = principal
    stream = ChatStream(rt, prepare(rt, call, principal))
    stream.first()
    stream.headers()
    for piece in coalesced(openai_sse(stream), stream.more_ready):
        write_chunk(sink, piece)
    stream.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=300)
    p.add_argument("--chunks", type=int, default=200, help="content chunks per long stream (default 200)")
    p.add_argument("--profile", action="store_true", help="print cProfile's top functions for the long streams")
    args = p.parse_args(argv)

    from kyma.cli import create_or_migrate_schema
    from kyma.factory import create_app
    from kyma.models import Account
    from kyma.runtime import runtime
    from kyma.services import ledger
    from kyma.services.accounts import Principal

    with tempfile.TemporaryDirectory(prefix="kyma-relay-") as tmp:
        from bench.procs import write_gateway_files

        _, tiers = write_gateway_files(Path(tmp), "http://127.0.0.1:9", "http://127.0.0.1:9", "NO_KEY", MODEL, MODEL)
        app = create_app({"instance_dir": tmp, "database_url": f"sqlite:///{Path(tmp) / 'kyma.db'}",
                          "secret_key": "relay-cost", "sim_base_port": 1, "tiers_path": tiers})
        with app.app_context():
            create_or_migrate_schema()
            rt = runtime()  # the default routes: the adapter below answers for every one of them
            account = Account.create(email="relay@example.com", password_hash="x", tier=4)
            ledger.add_credit(account.id, 1000, kind="grant")
            principal = Principal(account.id, account.email, 4)
            results = {}
            for chunks in (1, args.chunks):
                adapter = Adapter(chunks)
                rt.upstreams.adapter = lambda route, adapter=adapter: adapter
                sink = Sink()
                for _ in range(20):  # warm up caches and lazy imports
                    one_stream(rt, principal, chunks, sink)
                sink = Sink()
                profiler = None
                if args.profile and chunks > 1:
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                t0 = time.process_time()
                for _ in range(args.streams):
                    one_stream(rt, principal, chunks, sink)
                cpu = time.process_time() - t0
                if profiler:
                    profiler.disable()
                results[chunks] = (cpu * 1000 / args.streams, sink.writes / args.streams)
            short, long_ = results[1], results[args.chunks]
            per_chunk = (long_[0] - short[0]) / (args.chunks - 1)
            print(json.dumps({"streams": args.streams, "one_chunk_stream_ms": round(short[0], 3),
                              f"{args.chunks}_chunk_stream_ms": round(long_[0], 3),
                              "per_chunk_ms": round(per_chunk, 4),
                              "writes_per_long_stream": long_[1]}))
            if profiler:
                import pstats

                pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
