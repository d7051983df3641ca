"""The benchmark's verdicts against the targets and the printed table."""

from __future__ import annotations

# Targets on these 2-core machines, with auth, limits, credits and logging all on.
TARGETS = {
    "added_p50_ms": 2.0,
    "cpu_ms_per_request": 1.5,
    "added_ttfc_p50_ms": 2.0,
    "errors_500_streams": 0,
}


def _gw(load: list[dict], conns: int) -> dict:
    return next(r for r in load if r["target"] == "gateway" and r["connections"] == conns)


def _direct(load: list[dict], conns: int) -> dict:
    return next(r for r in load if r["target"] == "direct" and r["connections"] == conns)


def evaluate(result: dict) -> dict:
    """Each target: the measured value and whether it holds."""
    seq, load, many = result["sequential"], result["throughput"], result["streams"]
    # CPU per request: the worse of the sequential and the 32-connection run (the loaded runs amortise).
    cpu = max(seq["latency"]["gateway_cpu_ms_per_request"], _gw(load, 32)["cpu_ms_per_request"])
    measured = {
        "added_p50_ms": seq["latency"]["added_p50_ms"],
        "cpu_ms_per_request": cpu,
        "added_ttfc_p50_ms": seq["ttfc"]["added_p50_ms"],
        "errors_500_streams": many["gateway"]["errors"],
    }
    return {k: {"target": TARGETS[k], "measured": v, "met": v <= TARGETS[k]} for k, v in measured.items()}


def render_table(result: dict) -> str:
    """A plain-text table: gateway, simulator called directly, and the difference."""
    seq, load, many = result["sequential"], result["throughput"], result["streams"]
    lat, ttfc = seq["latency"], seq["ttfc"]
    rows = [("measure", "gateway", "direct", "added / note")]
    rows.append(("latency p50, c=1 (ms)", f"{lat['gateway_p50_ms']:.2f}", f"{lat['direct_p50_ms']:.2f}",
                 f"+{lat['added_p50_ms']:.2f} (paired median +{lat['paired_diff_p50_ms']:.2f})"))
    rows.append(("latency p99, c=1 (ms)", f"{lat['gateway_p99_ms']:.2f}", f"{lat['direct_p99_ms']:.2f}",
                 f"+{lat['added_p99_ms']:.2f}"))
    rows.append(("first chunk p50, c=1 (ms)", f"{ttfc['gateway_p50_ms']:.2f}", f"{ttfc['direct_p50_ms']:.2f}",
                 f"+{ttfc['added_p50_ms']:.2f}"))
    rows.append(("first chunk p99, c=1 (ms)", f"{ttfc['gateway_p99_ms']:.2f}", f"{ttfc['direct_p99_ms']:.2f}",
                 f"+{ttfc['added_p99_ms']:.2f}"))
    for conns in (32, 128):
        g, d = _gw(load, conns), _direct(load, conns)
        rows.append((f"req/s, {conns} connections", f"{g['rps']:.0f}", f"{d['rps']:.0f}",
                     f"p50 {g['p50_ms']:.1f} vs {d['p50_ms']:.1f} ms"))
        rows.append((f"CPU ms/request, c={conns}", f"{g['cpu_ms_per_request']:.2f}",
                     f"{d['cpu_ms_per_request']:.2f}", "worker utime+stime / requests"))
        rows.append((f"errors, c={conns}", str(g["errors"] + g["non_2xx"]), str(d["errors"] + d["non_2xx"]), ""))
    rows.append(("CPU ms/request, c=1", f"{lat['gateway_cpu_ms_per_request']:.2f}", "", ""))
    rows.append(("CPU ms/stream, c=1", f"{ttfc['gateway_cpu_ms_per_request']:.2f}", "", ""))
    rows.append(("errors, c=1 (plain+stream)", str(lat["gateway_errors"] + ttfc["gateway_errors"]),
                 str(lat["direct_errors"] + ttfc["direct_errors"]), ""))
    mg, md = many["gateway"], many["direct"]
    rows.append((f"{mg['streams']} concurrent streams: ok", str(mg["ok"]), str(md["ok"]),
                 f"peak open {mg['peak_open']} vs {md['peak_open']}"))
    rows.append((f"{mg['streams']} streams: errors", str(mg["errors"]), str(md["errors"]), ""))
    rows.append((f"{mg['streams']} streams: first chunk p50 (ms)", f"{mg['ttfc_p50_ms']:.1f}",
                 f"{md['ttfc_p50_ms']:.1f}", f"CPU {mg['server_cpu_ms_per_stream']:.2f} ms/stream"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for name, t in result["targets"].items():
        lines.append(f"target {name:20} ≤ {t['target']:<4}  measured {t['measured']:<8}  "
                     f"{'met' if t['met'] else 'MISSED'}")
    lines.append(f"ledger check after the run: {result['ledger_check']}")
    for f in result.get("request_log_failures", []):
        lines.append(f"request log: {f['count']} × HTTP {f['status']}: {f['error']}")
    return "\n".join(lines)
