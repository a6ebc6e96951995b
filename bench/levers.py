"""`python -m bench.levers`: the render alone, in this process (one ImageMagick thread, as in a
worker), under variants of the pipeline's settings, side by side: CPU per render and the quality of
what it made (SSIM and colour difference against bench/quality.py's reference).

The variants run interleaved, round after round, in a rotating order, so that a shared machine's
drift slows them alike; each figure is the median over the rounds (the least beside it).

  python -m bench.levers --source web-800x600-srgb.jpg --variants now,icc-always
  python -m bench.levers --source photo-12mp.jpg --variants now,support-2.5+margin-1.25
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

from bench import inputs, quality

HERE = os.path.dirname(os.path.abspath(__file__))
# Output names per source: as the bench's workloads ask (1: crop to fill; 2: new widths).
NAMES = {
    "web": [f"{w}x{h}.jpg" for w, h in ((120, 90), (200, 300), (350, 120), (480, 480), (150, 410),
                                        (300, 200), (499, 260), (260, 499))],
    "photo": [f"w{w}.jpg" for w in (220, 333, 480, 512, 640, 777, 900, 1000)],
}


def variants(pipeline, magick, icc) -> dict:
    """name -> a context manager that sets the pipeline up that way."""
    def patched(target, name, value):
        @contextlib.contextmanager
        def setting():
            saved = getattr(target, name)
            setattr(target, name, value)
            try:
                yield
            finally:
                setattr(target, name, saved)
        return setting

    return {
        "now": contextlib.nullcontext,
        "icc-always": patched(icc, "is_srgb", lambda profile: False),
        "support-3": patched(pipeline, "LANCZOS_SUPPORT", None),
        "support-2.5": patched(pipeline, "LANCZOS_SUPPORT", 2.5),
        "support-2": patched(pipeline, "LANCZOS_SUPPORT", 2.0),
        "margin-1.5": patched(pipeline, "SHRINK_ON_LOAD_MARGIN", 1.5),
        "margin-1.25": patched(pipeline, "SHRINK_ON_LOAD_MARGIN", 1.25),
        "no-monitor": patched(magick.library, "MagickSetProgressMonitor", lambda *arguments: None),
    }


def combined(known: dict, names: list):
    """One variant made of several ("support-2.5+margin-1.25")."""
    @contextlib.contextmanager
    def setting():
        with contextlib.ExitStack() as stack:
            for name in names:
                stack.enter_context(known[name]())
            yield
    return setting


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="web-800x600.jpg", help="a name from bench/inputs.py")
    parser.add_argument("--variants", default="now,icc-always")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    sources = inputs.make_all(os.path.join(HERE, "work"))
    with open(sources[args.source], "rb") as f:
        data = f.read()

    # One ImageMagick thread, as in a worker; not the worker's policy, which refuses the raw coders
    # that scoring reads pixels through.
    os.environ["MAGICK_THREAD_LIMIT"] = os.environ["OMP_NUM_THREADS"] = "1"
    import wand.resource
    from imageserver.imaging import icc, magick, pipeline
    from imageserver.core.names import parse_output
    from imageserver.core.settings import Settings
    wand.resource.limits["thread"] = 1
    settings = Settings()
    specs = [parse_output(name, settings) for name in NAMES[args.source.split("-")[0]]]
    known = variants(pipeline, magick, icc)
    chosen = {name: combined(known, name.split("+")) for name in args.variants.split(",")}
    cpu = {name: [] for name in chosen}
    outputs = {}
    for round_number in range(args.rounds):
        order = list(chosen)[round_number % len(chosen):] + list(chosen)[:round_number % len(chosen)]
        for name in order:
            with chosen[name]():
                started = time.process_time()
                made = [pipeline.render(data, spec, 75) for spec in specs]
                cpu[name].append(1000 * (time.process_time() - started) / len(specs))
            outputs[name] = made
    print(f"{args.source}, {len(specs)} outputs, {args.rounds} rounds, load average "
          f"{os.getloadavg()[0]:.2f} at the end")
    print(f"{'variant':14} {'CPU ms/render':>14} {'least':>7} {'SSIM':>7} {'min':>7} {'dE':>6}")
    for name in chosen:
        scores = [quality.score(data, spec, out) for spec, out in zip(specs, outputs[name])]
        ssims = [s for s, _, _ in scores]
        delta = statistics.mean(colour["managed"] for _, _, colour in scores)
        print(f"{name:14} {statistics.median(cpu[name]):14.2f} {min(cpu[name]):7.2f} "
              f"{statistics.mean(ssims):7.4f} {min(ssims):7.4f} {delta:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
