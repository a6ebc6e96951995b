"""`python -m bench.cost_model`: the cost model (imageserver/imaging/cost.py) beside the real CPU time of the
same work, on this machine, for the sources and outputs users ask for and for the hostile ones.

Each row is one render (or an upload's check): the price the server puts on it before starting,
the CPU it really took (the least of --rounds runs, this process's CPU time, one ImageMagick
thread as in a worker), and their ratio. The budget (--maximum_request_ms) is in the model's
milliseconds, so a ratio well above 1 is work the model lets through too cheaply (the backstop,
at 2 x price + 500 ms, is then what stops it), and well under 1 is work refused too early.
"""
from __future__ import annotations

import argparse
import time

from bench import inputs
from tests import hostile

# (name, width, height, format, alpha): made before ImageMagick is set up (the plasma the
# pictures start from is a pseudo-image the server's policy refuses).
SOURCES = (("web-800x600.jpg", 800, 600, "jpeg", False), ("photo-12mp.jpg", 4000, 3000, "jpeg", False),
           ("web-800x600.png", 800, 600, "png", True), ("photo-6mp.png", 3000, 2000, "png", True),
           ("web-800x600.webp", 800, 600, "webp", False), ("web-800x600.gif", 800, 600, "gif", False))
OUTPUTS = ("w100.jpg", "w400.jpg", "x300.webp", "w1000.jpg", "1000x1000.jpg", "1000x1000.png",
           "1000x1000-q100.png", "w1000-q100.webp", "x300.gif", "w1000.avif", "full_size.jpg")
HOSTILE_OUTPUTS = ("x100.gif", "x300.gif", "x300.jpg")


def hostile_sources() -> dict:
    return {"300 frames of 1x1.gif": hostile.gif_frames(300),
            "300 frames of 200x200.gif": hostile.gif_frames(300, 200, 200),
            "20 frames of 577x577.gif": hostile.gif_frames(20, 577, 577),
            "7000x7000 grey, 90 scans.jpg": hostile.jpeg_many_scans(7000, 7000, 90)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sources = {name: inputs.photo(width, height, fmt, alpha)
               for name, width, height, fmt, alpha in SOURCES}
    sources.update(hostile_sources())

    from imageserver.core.errors import ImageServerError
    from imageserver.core.names import parse_output
    from imageserver.core.settings import Settings
    from imageserver.images.setup import init_worker
    from imageserver.imaging import originals, pipeline, plan
    from imageserver.imaging.source import Limits
    settings = Settings(maximum_width=4000, maximum_height=4000)
    formats = init_worker(settings).formats
    limits = Limits(maximum_request_ms=10**9)   # priced, never refused here
    ratios = []
    print(f"{'source':32} {'work':22} {'priced ms':>10} {'real ms':>9} {'real/priced':>11}")
    for name, data in sources.items():
        source = originals.read_header(data, limits)
        outputs = HOSTILE_OUTPUTS if "frames" in name or "scans" in name else OUTPUTS
        rows = [("upload check", plan.upload_check(source).milliseconds,
                 lambda: originals.describe(data, limits))]
        for output in outputs:
            spec = parse_output(output, settings)
            quality = spec.quality or settings.default_quality
            rows.append((output, plan.price(spec, source, quality).milliseconds,
                         lambda spec=spec, quality=quality:
                             pipeline.render(data, spec, quality, limits, formats)))
        for work, priced, run in rows:
            try:
                real = min(_cpu_ms(run) for _ in range(args.rounds))
            except ImageServerError as error:
                print(f"{name:32} {work:22} {priced:10.0f} {'-':>9} {error.message[:40]}")
                continue
            ratios.append(real / priced)
            print(f"{name:32} {work:22} {priced:10.0f} {real:9.0f} {real / priced:11.2f}")
    print(f"real/priced over {len(ratios)} pieces of work: least {min(ratios):.2f}, "
          f"median {sorted(ratios)[len(ratios) // 2]:.2f}, most {max(ratios):.2f}")
    return 0


def _cpu_ms(run) -> float:
    started = time.process_time()
    run()
    return 1000 * (time.process_time() - started)


if __name__ == "__main__":
    raise SystemExit(main())
