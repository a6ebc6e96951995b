"""The bench's results as a Markdown table (printed, and pasted into the README) and a PNG chart."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt  # noqa: E402


def table(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['imagemagick']}; {m['date']}, load average {m['load_average_at_start']:.2f} "
        f"at start. {results['workers']} sync workers, wrk with {results['connections']} connections "
        f"on the same machine, {results['seconds']:.0f} s per workload.",
        "",
        "| workload | req/s | p50 ms | p99 ms | worker CPU ms/req | 2-core bound req/s "
        "| peak RSS per worker, MiB | SSIM mean (min) | SSIM ceiling | peer req/s | x peer |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for w in results["workloads"]:
        if "skipped" in w:
            lines.append(f"| {w['key']}: {_code(w['title'])} | skipped: {w['skipped']} ||||||||||")
            continue
        ssim = w.get("ssim")
        cells = [
            f"{w['key']}: {_code(w['title'])}", _rate(w["rps"]), f"{w['p50_ms']:.1f}", f"{w['p99_ms']:.1f}",
            f"{w['worker_cpu_ms']:.1f}" if "worker_cpu_ms" in w else "",
            _rate(2000 / w["worker_cpu_ms"]) if w.get("worker_cpu_ms") else "",
            " / ".join(f"{value:.0f}" for value in w["peak_rss_mib"]),
            f"{ssim['mean']:.3f} ({ssim['min']:.3f})" if ssim else "",
            f"{ssim['ceiling']:.3f}" if ssim else "",
            _rate(w["target_rps"]) if w.get("target_rps") else "",
            f"{w['rps'] / w['target_rps']:.2f}x" if w.get("target_rps") else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "The original's way on the same inputs (one `/usr/bin/convert` per output, "
                  f"{results['connections']} at a time):", "",
              "| workload | req/s | convert req/s | x convert | CPU ms/req | convert CPU ms/output "
              "| x convert (CPU) | convert SSIM mean (min) |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for w in results["workloads"]:
        convert = w.get("convert")
        if not convert:
            continue
        lines.append("| " + " | ".join([
            w["key"], _rate(w["rps"]), _rate(convert["rps"]), f"{w['ratio_to_convert']:.1f}x",
            f"{w['worker_cpu_ms']:.1f}", f"{convert['cpu_ms']:.1f}",
            f"{convert['cpu_ms'] / w['worker_cpu_ms']:.1f}x",
            f"{convert['ssim']['mean']:.3f} ({convert['ssim']['min']:.3f})"]) + " |")
    memory = results.get("memory_largest_source")
    if memory:
        lines += ["", f"Largest source allowed ({memory['source']}, {memory['outputs']}): "
                      f"{memory['seconds']} s, peak RSS per worker "
                      + " / ".join(f"{value:.0f}" for value in memory["peak_rss_mib"]) + " MiB."]
    problems = [f"{w['key']}: {w['not_ok']} non-200 answers, {w['socket_errors']} socket errors, "
                f"{w.get('hits', 0)} cache hits where outputs should be made"
                for w in results["workloads"] if "skipped" not in w
                and (w["not_ok"] or w["socket_errors"] or (w.get("hits") and w["key"][0] in "1234"))]
    if problems:
        lines += ["", "Problems: " + "; ".join(problems)]
    return "\n".join(lines)


def _code(title: str) -> str:
    """Output names with placeholders as code: Markdown would take `<W>` for an HTML tag."""
    return re.sub(r"(\S*<\w+>\S*)", r"`\1`", title)


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def chart(results: dict, path: str) -> None:
    """Requests per second per workload: ours, the convert baseline and the peer (log scale)."""
    rows = [w for w in results["workloads"] if "skipped" not in w]
    labels = [w["key"] for w in rows]
    ours = [w["rps"] for w in rows]
    convert = [w["convert"]["rps"] if "convert" in w else 0 for w in rows]
    peer = [w.get("target_rps") or 0 for w in rows]
    x = range(len(rows))
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    width = 0.27
    axes.bar([i - width for i in x], ours, width, label="imageserver", color="#2a7ab0")
    axes.bar(list(x), peer, width, color="#b0b0b0",
             label="Pillow-based peer (issue's figures; for nginx hits, the target: 10x its hits)")
    axes.bar([i + width for i in x], convert, width, label="convert per output (original)",
             color="#d08030")
    for i, value in zip(x, ours):
        axes.annotate(f"{value:,.0f}" if value >= 10 else f"{value:.1f}", (i - width, value),
                      ha="center", va="bottom", fontsize=8)
    axes.set_yscale("log")
    axes.set_xticks(list(x))
    axes.set_xticklabels(labels)
    axes.set_xlabel("workload")
    axes.set_ylabel("requests per second (log)")
    m = results["machine"]
    axes.set_title(f"imageserver, 2 workers, wrk -c{results['connections']}; {m['cores']} cores "
                   f"{m['cpu'][:40]}", fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
