"""`python -m bench.levers`: the render alone, in this process (one ImageMagick thread, as in a
worker), under variants of the pipeline's settings, side by side: CPU per render and the quality of
what it made (SSIM and colour difference against bench/quality.py's reference).

The variants run interleaved, round after round, in a rotating order, so that a shared machine's
drift slows them alike; each figure is the median over the rounds (the least beside it).

  python -m bench.levers --source web-800x600-srgb.jpg --variants now,icc-always
  python -m bench.levers --source photo-12mp.jpg --variants now,support-2.5+margin-1.25
  python -m bench.levers --source web-800x600.jpg --variants now,lanczos2,pillow   (pillow: thumbor's way)
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

from bench import inputs, quality

# Output names per source: as the bench's workloads ask (1: crop to fill; 2: new widths).
NAMES = {
    "web": [f"{w}x{h}.jpg" for w, h in ((120, 90), (200, 300), (350, 120), (480, 480), (150, 410),
                                        (300, 200), (499, 260), (260, 499))],
    "photo": [f"w{w}.jpg" for w in (220, 333, 480, 512, 640, 777, 900, 1000)],
    # workload 3: squares of the 12 MP picture
    "squares": [f"x{s}.jpg" for s in (100, 160, 230, 290, 370, 440, 520, 600)],
}


def variants(pipeline, magick, icc, plan) -> dict:
    """name -> a context manager that sets the pipeline up that way."""
    from wand.image import FILTER_TYPES
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
        "pillow": contextlib.nullcontext,   # not ours: see pillow_render
        "icc-always": patched(icc, "is_srgb", lambda profile: False),
        # A wide-gamut profile applied by ImageMagick's MagickProfileImage (a new transform each
        # time, in double precision), as before LittleCMS's kept 8-bit transform (lcms.py).
        "icc-by-magick": patched(pipeline, "_converted_by_lcms", lambda *arguments: False),
        "support-3": patched(pipeline, "LANCZOS_SUPPORT", None),
        "support-2.5": patched(pipeline, "LANCZOS_SUPPORT", 2.5),
        "support-2": patched(pipeline, "LANCZOS_SUPPORT", 2.0),
        "margin-1.5": patched(plan, "CROP_MARGIN", 1.5),
        "margin-1.25": patched(plan, "CROP_MARGIN", 1.25),
        "margin-2": patched(plan, "CROP_MARGIN", 2.0),
        "margin-3": patched(plan, "CROP_MARGIN", 3.0),
        "no-monitor": patched(magick.library, "MagickSetProgressMonitor", lambda *arguments: None),
        # The backstop's monitor on every row of every step, as before it was taken off the
        # size-driven work (pipeline._priced_by_size_from_here).
        "watch-all": patched(pipeline, "_priced_by_size_from_here", lambda *arguments: False),
        # 2-lobe filters in place of Lanczos (support 2.5).
        "lanczos2": combined_settings(patched(magick, "LANCZOS", FILTER_TYPES.index("lanczos2")),
                                      patched(pipeline, "LANCZOS_SUPPORT", None)),
        "catrom": combined_settings(patched(magick, "LANCZOS", FILTER_TYPES.index("catrom")),
                                    patched(pipeline, "LANCZOS_SUPPORT", None)),
        **{name: combined_settings(patched(magick, "LANCZOS", FILTER_TYPES.index(name)),
                                   patched(pipeline, "LANCZOS_SUPPORT", None))
           for name in ("triangle", "hermite", "mitchell", "box")},
        "margin-1": patched(plan, "CROP_MARGIN", 1.0),
        "preshrink-3": patched(pipeline, "PRESHRINK_TO", 3),
        "preshrink-4": patched(pipeline, "PRESHRINK_TO", 4),
        "preshrink-off": patched(pipeline, "PRESHRINK_FROM", 10**9),
        "whole-1.5": patched(plan, "WHOLE_MARGIN", 1.5),
        # JPEG shrink-on-load as it was before its margins and scales were weighed per scale and kind
        # (every scale at 1.5, crops rounded on whatever scale).
        "scales-before": combined_settings(
            patched(plan, "WHOLE_MARGIN", 1.5),
            patched(plan, "JPEG_SCALES", ((8, 1 / 8, 1.0), (4, 2 / 8, 1.0), (3, 3 / 8, 1.0), (2, 4 / 8, 1.0))),
            patched(plan, "_crop_lands", lambda *arguments: True)),
        "margin-1.1": patched(plan, "CROP_MARGIN", 1.1),
        "support-1.5": patched(pipeline, "LANCZOS_SUPPORT", 1.5),
        "gif-dither": patched(pipeline, "GIF_DITHER", True),
        "gif-writer": patched(magick, "to_palette", lambda image, dither: None),
        # The colour transform at decode size, before the crop and resize (as ImageMagick's
        # `convert -profile` does it).
        "icc-first": combined_settings(patched(pipeline, "_crop_and_resize", _converted_first(pipeline)),
                                       patched(pipeline, "_to_srgb", lambda image, profile: None)),
    }


def combined_settings(*settings):
    @contextlib.contextmanager
    def setting():
        with contextlib.ExitStack() as stack:
            for one in settings:
                stack.enter_context(one())
            yield
    return setting


def _converted_first(pipeline):
    crop_and_resize, to_srgb = pipeline._crop_and_resize, pipeline._to_srgb

    def converted_first(image, *arguments, **keywords):
        to_srgb(image, pipeline._profile_to_apply(image))
        crop_and_resize(image, *arguments, **keywords)
    return converted_first


def combined(known: dict, names: list):
    """One variant made of several ("support-2.5+margin-1.25")."""
    @contextlib.contextmanager
    def setting():
        with contextlib.ExitStack() as stack:
            for name in names:
                stack.enter_context(known[name]())
            yield
    return setting


def pillow_render(data: bytes, spec, quality: int) -> bytes:
    """The output as thumbor's Pillow engine makes it (variant "pillow", for its SSIM beside ours): a
    crop to fill in whole pixels, centred, then a LANCZOS resize after `draft` (JPEG shrink-on-load
    to no less than the output's size, which only takes effect when nothing was cropped), baseline
    JPEG at `quality`. Its ICC profile is left as thumbor leaves it (kept): compare SSIM, not colour."""
    import io

    from PIL import Image as PillowImage
    image = PillowImage.open(io.BytesIO(data))
    if spec.kind == "width":
        size = (spec.width, max(1, round(image.height * spec.width / image.width)))
    else:
        size = (spec.width, spec.height)
        scale = max(size[0] / image.width, size[1] / image.height)
        crop_w, crop_h = size[0] / scale, size[1] / scale
        left, top = (image.width - crop_w) / 2, (image.height - crop_h) / 2
        image = image.crop((int(left), int(top), int(left + crop_w), int(top + crop_h)))
    image.draft(None, size)
    image = image.convert("RGB").resize(size, PillowImage.LANCZOS)
    out = io.BytesIO()
    if spec.ext == "gif":   # thumbor's GIF: Pillow's adaptive palette, undithered
        image.convert("P", palette=PillowImage.Palette.ADAPTIVE).save(out, "GIF")
    else:
        image.save(out, "JPEG", quality=quality, icc_profile=image.info.get("icc_profile"))
    return out.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="web-800x600.jpg", help="a name from bench/inputs.py")
    parser.add_argument("--variants", default="now,icc-always")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ext", default="jpg", help="the outputs' format (jpg, gif, webp, png)")
    parser.add_argument("--names", default="", help=f"the outputs asked: {', '.join(NAMES)} (default: "
                        "by the source's name)")
    args = parser.parse_args(argv)
    data = inputs.in_one_process(args.source)
    from imageserver.core.names import parse_output
    from imageserver.core.settings import Settings
    from imageserver.imaging import icc, magick, pipeline, plan
    settings = Settings()
    specs = [parse_output(name.replace(".jpg", f".{args.ext}"), settings)
             for name in NAMES[args.names or args.source.split("-")[0]]]
    known = variants(pipeline, magick, icc, plan)
    chosen = {name: combined(known, name.split("+")) for name in args.variants.split(",")}
    cpu = {name: [] for name in chosen}
    outputs = {}
    for round_number in range(args.rounds):
        order = list(chosen)[round_number % len(chosen):] + list(chosen)[:round_number % len(chosen)]
        for name in order:
            with chosen[name]():
                started = time.process_time()
                made = [(pillow_render if name == "pillow" else pipeline.render)(data, spec, 75)
                        for spec in specs]
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
