"""The bench's results as a Markdown table (printed, and pasted into the README) and a PNG chart."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt  # noqa: E402


def table(results: dict) -> str:
    m, p = results["machine"], results["peer"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['imagemagick']}; {m['date']}, load average {m['load_average_at_start']:.2f} "
        f"at start. {results['workers']} sync workers against {p['name']} {p['version']} "
        f"({p['processes']} processes, {p['engine']}), each driven by wrk with "
        f"{results['connections']} connections on the same machine, in turn, {results['rounds']} passes "
        f"of {results['seconds'] / results['rounds']:.0f} s per workload and server. A worker's kept "
        "decodes are off but for the upload (5) and the burst (7), as a new size of a picture seldom "
        "finds its decode kept.",
        "",
        f"| workload | req/s | {p['name']} req/s | x {p['name']} | worker CPU ms/req "
        f"| {p['name']} CPU ms/req | x {p['name']} (CPU) | SSIM mean (min) | {p['name']} SSIM mean (min) "
        "| SSIM ceiling |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    rows = [w for w in results["workloads"] if "skipped" not in w]
    for w in results["workloads"]:
        if "skipped" in w:
            lines.append(f"| {w['key']}: {_code(w['title'])} | skipped: {w['skipped']} ||||||||")
            continue
        peer, ssim = w.get("peer", {}), w.get("ssim")
        lines.append("| " + " | ".join([
            f"{w['key']}: {_code(w['title'])}", _rate(w["rps"]),
            _rate(peer["rps"]) if peer else "", f"{w['ratio_to_peer']:.2f}x" if peer else "",
            _ms(w.get("worker_cpu_ms")), _ms(peer.get("worker_cpu_ms")),
            f"{w['cpu_ratio_to_peer']:.2f}x" if "cpu_ratio_to_peer" in w else "",
            _ssim(ssim), _ssim(peer.get("ssim")), f"{ssim['ceiling']:.3f}" if ssim else "",
        ]) + " |")
    lines += ["", "Latency and memory (p50: the passes' mean; p99: the worse pass):", "",
              f"| workload | p50 ms | p99 ms | {p['name']} p50 ms | {p['name']} p99 ms "
              f"| 2-core bound req/s | peak RSS per worker, MiB | {p['name']} peak RSS, MiB "
              "| req/s per pass (ours; peer) |",
              "|---|---:|---:|---:|---:|---:|---|---|---|"]
    for w in rows:
        peer = w.get("peer", {})
        lines.append("| " + " | ".join([
            w["key"], f"{w['p50_ms']:.1f}", f"{w['p99_ms']:.1f}",
            f"{peer['p50_ms']:.1f}" if peer else "", f"{peer['p99_ms']:.1f}" if peer else "",
            _rate(2000 / w["worker_cpu_ms"]) if w.get("worker_cpu_ms") else "",
            _mib(w["peak_rss_mib"]), _mib(peer["peak_rss_mib"]) if peer else "",
            ", ".join(_rate(v) for v in w["pass_rps"])
            + ("; " + ", ".join(_rate(v) for v in peer["pass_rps"]) if peer else ""),
        ]) + " |")
    lines += ["", "The original's way on the same inputs (one `/usr/bin/convert` per output, "
                  f"{results['connections']} at a time):", "",
              "| workload | req/s | convert req/s | x convert | CPU ms/req | convert CPU ms/output "
              "| x convert (CPU) | convert SSIM mean (min) |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for w in rows:
        convert = w.get("convert")
        if not convert:
            continue
        lines.append("| " + " | ".join([
            w["key"], _rate(w["rps"]), _rate(convert["rps"]), f"{w['ratio_to_convert']:.1f}x",
            f"{w['worker_cpu_ms']:.1f}", f"{convert['cpu_ms']:.1f}",
            f"{convert['cpu_ms'] / w['worker_cpu_ms']:.1f}x", _ssim(convert["ssim"])]) + " |")
    tagged = [w for w in rows if w.get("tagged") and w.get("ssim", {}).get("delta_e")]
    if tagged:
        lines += ["", "Colour, for the sources that carry an ICC profile (mean CIE76 delta E of 8x8-pixel "
                      "block means against the colour-managed reference; under 1 is invisible, 2-3 visible "
                      "side by side): as a colour-managed viewer (a browser) shows each output, and, for "
                      "outputs that keep the source's profile, as a viewer that ignores it shows them:", "",
                  f"| workload | ours | {p['name']}, colour-managed | {p['name']}, profile ignored |",
                  "|---|---:|---:|---:|"]
        for w in tagged:
            ours, theirs = w["ssim"]["delta_e"], w.get("peer", {}).get("ssim", {}).get("delta_e", {})
            lines.append(f"| {w['key']} | {ours['managed']:.2f} | {_delta(theirs.get('managed'))} "
                         f"| {_delta(theirs.get('unmanaged'), 'no profile kept')} |")
    for w in rows:
        if w["key"].endswith("burst"):
            lines += ["", f"{w['key']}: req/s is bursts (pages) per second, each timed from its first "
                          "request to its last answer; CPU per burst; our upload of the new picture "
                          f"apart: {w.get('upload_cpu_ms', 0):.1f} ms of worker CPU."]
    memory = results.get("memory_largest_source")
    if memory:
        lines += ["", f"Largest source allowed ({memory['source']}, {memory['outputs']}): "
                      f"{memory['seconds']} s, peak RSS per worker {_mib(memory['peak_rss_mib'])} MiB."]
    problems = [f"{name} {w['key']}: {f['not_ok']} non-200 answers, {f['socket_errors']} socket "
                f"errors, {f.get('hits', 0)} cache hits where outputs should be made"
                for w in rows for name, f in (("ours", w), (p["name"], w.get("peer")))
                if f and (f["not_ok"] or f["socket_errors"] or (f.get("hits") and w["key"][0] in "1234"))]
    if problems:
        lines += ["", "Problems: " + "; ".join(problems)]
    return "\n".join(lines)


def _ms(value) -> str:
    """Milliseconds: hundredths under 10 (a cache hit costs half a millisecond)."""
    if not value:
        return ""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _delta(value, missing: str = "") -> str:
    return f"{value:.2f}" if value is not None else missing


def _ssim(ssim) -> str:
    return f"{ssim['mean']:.3f} ({ssim['min']:.3f})" if ssim else ""


def _mib(values: list) -> str:
    return " / ".join(f"{value:.0f}" for value in values)


def _code(title: str) -> str:
    """Output names with placeholders as code: Markdown would take `<W>` for an HTML tag."""
    return re.sub(r"(\S*<\w+>\S*)", r"`\1`", title)


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def chart(results: dict, path: str) -> None:
    """Requests per second per workload: ours, the peer and the convert baseline, all from the same
    run (log scale)."""
    rows = [w for w in results["workloads"] if "skipped" not in w]
    labels = [w["key"] for w in rows]
    ours = [w["rps"] for w in rows]
    peer = [w["peer"]["rps"] if "peer" in w else 0 for w in rows]
    convert = [w["convert"]["rps"] if "convert" in w else 0 for w in rows]
    x = range(len(rows))
    p = results["peer"]
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    width = 0.27
    axes.bar([i - width for i in x], ours, width, label="imageserver", color="#2a7ab0")
    axes.bar(list(x), peer, width, color="#b0b0b0",
             label=f"{p['name']} {p['version']} ({p['engine']}), same run")
    axes.bar([i + width for i in x], convert, width, label="convert per output (original)",
             color="#d08030")
    for i, value, other in zip(x, ours, peer):
        axes.annotate(_rate(value), (i - width, value), ha="center", va="bottom", fontsize=8)
        if other:
            axes.annotate(_rate(other), (i, other), ha="center", va="bottom", fontsize=7,
                          color="#606060")
    axes.set_yscale("log")
    axes.set_xticks(list(x))
    axes.set_xticklabels(labels)
    axes.set_xlabel("workload")
    axes.set_ylabel("requests per second (log)")
    m = results["machine"]
    axes.set_title(f"imageserver (2 workers) and {p['name']} ({p['processes']} processes), "
                   f"wrk -c{results['connections']}; {m['cores']} cores {m['cpu'][:32]}", fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
