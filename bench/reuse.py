"""`python -m bench.reuse`: what reusing work across the outputs of one original saves, in this
process (one ImageMagick thread, as in a worker): CPU per output and SSIM against bench/quality.py's
reference.

- `burst`: the page burst's 5 sizes (workload 7) of a new 12 MP JPEG, made fresh each (no decoded
  source kept), then with the decoded-source cache (pipeline.render's `reuse`, decoded.py) as one
  worker sees them (all 5, in a new order each round) and as each of 2 workers sees them (the 5
  split 3 + 2 at random). Every output made from a kept decode is compared with the same output
  made fresh: bytes equal, or their SSIM.
- `working`: a reduced working copy of the 12 MP original (a JPEG of --working px wide at quality
  --working_quality), outputs of workloads 2 (w<W>) and 3 (x<S>) made from it against made from the
  original, and what making the copy costs.

The variants run interleaved, round after round, so that a shared machine's drift slows them alike.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from bench import inputs, quality

BURST = ("x100.jpg", "x300.jpg", "w480.jpg", "800x600.jpg", "w1000.jpg")
WIDTHS = tuple(f"w{w}.jpg" for w in (200, 333, 480, 640, 777, 1000))
SQUARES = tuple(f"x{s}.jpg" for s in (100, 250, 400, 600)) + ("x300.webp",)


def _cpu(work) -> tuple:
    started = time.process_time()
    result = work()
    return 1000 * (time.process_time() - started), result


def burst(pipeline, specs, data: bytes, rounds: int) -> None:
    cpu = {"fresh": [], "one worker": [], "two workers": []}
    fresh_outputs = {spec.name: pipeline.render(data, spec, 75) for spec in specs}
    same, ssims = 0, []
    for number in range(rounds):
        order = random.sample(specs, len(specs))
        for variant in random.sample(list(cpu), len(cpu)):
            tag = f"{variant}-{number}"
            if variant == "fresh":
                keys = [""] * len(order)
            elif variant == "one worker":
                keys = [tag] * len(order)
            else:
                keys = [tag + ("a" if i < 3 else "b") for i in range(len(order))]
            spent, outputs = _cpu(lambda order=order, keys=keys: [pipeline.render(data, spec, 75, reuse=key)
                                                                  for spec, key in zip(order, keys)])
            cpu[variant].append(spent / len(order))
            if variant != "fresh":
                for spec, output in zip(order, outputs):
                    if output == fresh_outputs[spec.name]:
                        same += 1
                    else:
                        ssims.append((spec.name, _ssim_between(output, fresh_outputs[spec.name]),
                                      quality.score(data, spec, output)[0]))
    for variant, figures in cpu.items():
        print(f"  {variant:12} CPU ms/output {statistics.median(figures):7.2f} (least {min(figures):.2f})")
    print(f"  outputs from a kept decode byte-identical to fresh ones: {same}; others (from a bigger "
          f"decode), SSIM against the fresh one: {_summary(ssims)}")
    for spec in specs:
        print(f"  {spec.name:12} SSIM vs reference {quality.score(data, spec, fresh_outputs[spec.name])[0]:.4f}")


def _ssim_between(a: bytes, b: bytes) -> float:
    from wand.image import Image
    with Image(blob=a) as first, Image(blob=b) as second:
        return quality.ssim(quality.grey(first), quality.grey(second))


def _summary(ssims: list) -> str:
    if not ssims:
        return "none"
    by_name = {}
    for name, against_fresh, against_reference in ssims:
        by_name.setdefault(name, []).append((against_fresh, against_reference))
    return ", ".join(f"{name} min {min(f for f, _ in pairs):.4f} (against the reference: mean "
                     f"{statistics.mean(r for _, r in pairs):.4f})" for name, pairs in sorted(by_name.items()))


def working(pipeline, plan, parse, data: bytes, width: int, working_quality: int, rounds: int,
            margin: float) -> None:
    make_spec = parse(f"w{width}.jpg")
    make_cpu = []
    saved_margin, plan.WHOLE_MARGIN = plan.WHOLE_MARGIN, margin
    for _ in range(rounds):
        spent, copy = _cpu(lambda: pipeline.render(data, make_spec, working_quality))
        make_cpu.append(spent)
    plan.WHOLE_MARGIN = saved_margin
    print(f"  working copy {width} px wide at q{working_quality} (shrink-on-load margin {margin}): "
          f"{len(copy):,} bytes, made in "
          f"{statistics.median(make_cpu):.1f} ms CPU (least {min(make_cpu):.1f})")
    for names in (WIDTHS, SQUARES):
        specs = [parse(name) for name in names]
        cpu = {"original": [], "working": []}
        made = {}
        for number in range(rounds):
            for variant in (("original", "working") if number % 2 else ("working", "original")):
                source = data if variant == "original" else copy
                spent, outputs = _cpu(lambda source=source, specs=specs: [pipeline.render(source, spec, 75)
                                                                       for spec in specs])
                cpu[variant].append(spent / len(specs))
                made[variant] = outputs
        for variant in cpu:
            scores = [quality.score(data, spec, output)[0] for spec, output in zip(specs, made[variant])]
            print(f"  {','.join(names)} from {variant:8}: CPU ms/output {statistics.median(cpu[variant]):7.2f}"
                  f" (least {min(cpu[variant]):.2f}); SSIM " + " ".join(f"{s:.4f}" for s in scores)
                  + f" mean {statistics.mean(scores):.4f}")
        saving = statistics.median(cpu["original"]) - statistics.median(cpu["working"])
        if saving > 0:
            print(f"  the copy pays for itself after {statistics.median(make_cpu) / saving:.1f} outputs")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="photo-12mp-srgb.jpg", help="a name from bench/inputs.py")
    parser.add_argument("--parts", default="burst,working")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--working", type=int, default=2000, help="the working copy's width")
    parser.add_argument("--working_quality", type=int, default=95)
    parser.add_argument("--working_margin", type=float, default=1.0,
                        help="shrink-on-load margin of the copy's making (1: a DCT scale of exactly "
                             "its size, no resize)")
    args = parser.parse_args(argv)
    data = inputs.in_one_process(args.source)
    from imageserver.core.names import parse_output
    from imageserver.core.settings import Settings
    from imageserver.imaging import pipeline, plan
    settings = Settings(maximum_width=4000)

    def parse(name):
        return parse_output(name, settings)
    print(f"{args.source}, {args.rounds} rounds, load average {os.getloadavg()[0]:.2f}")
    if "burst" in args.parts:
        print("burst:", ",".join(BURST))
        burst(pipeline, [parse(name) for name in BURST], data, args.rounds)
    if "working" in args.parts:
        print("working copy:")
        working(pipeline, plan, parse, data, args.working, args.working_quality, args.rounds,
                args.working_margin)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
