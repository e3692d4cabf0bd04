"""Model cost per megapixel: the `Enhancer` on one CPU thread, each architecture against the
`affine` baseline in the same run, at 256x256 (one tile) and 2048x2048 (tiled).

    .venv/bin/python benchmarks/model_cost.py [--model bundled] [--threads 1] [--repeats 3]

Untrained networks of each architecture cost the same as trained ones (same layers); with
``--model`` a trained checkpoint is timed as well. Runs are interleaved (A, B, A, B...) and the
minimum of each is kept, because this machine is shared and noisy. Prints ms per image, ms per
megapixel and the ratio to `affine`, and writes them to benchmarks/results/ (_results.py).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _results import write_result

from skinray import checkpoint
from skinray.checkpoint import LoadedModel
from skinray.config import Config, ModelConfig
from skinray.model import build_model, count_parameters
from skinray.predict import Enhancer
from skinray.synth import skin_image


def enhancers(model_uri: str | None) -> dict[str, Enhancer]:
    found = {}
    for arch in ("affine", "lut", "poster"):
        cfg = Config(model=ModelConfig(arch=arch, dropout=0.0))
        found[f"{arch} (untrained)"] = Enhancer(LoadedModel(build_model(cfg.model).eval(), cfg, {}), "cpu")
    if model_uri:
        found[model_uri] = Enhancer(checkpoint.load(model_uri), "cpu")
    return found


def photo(side: int) -> np.ndarray:
    tile = skin_image(0, 0, 256)
    reps = -(-side // 256)
    return np.ascontiguousarray(np.tile(tile, (reps, reps, 1))[:side, :side])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="also time this checkpoint (e.g. bundled)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = enhancers(args.model)
    results = {}
    for side in (256, 2048):
        image = photo(side)
        times = {name: [] for name in models}
        for e in models.values():
            e.enhance(image[:256, :256])  # warm-up
        for _ in range(args.repeats if side == 256 else max(1, args.repeats - 1)):
            for name, e in models.items():
                started = time.perf_counter()
                e.enhance(image)
                times[name].append(time.perf_counter() - started)
        mp = side * side / 1e6
        base = min(times["affine (untrained)"]) / mp
        results[side] = {name: {"ms_per_image": 1000 * min(t), "ms_per_megapixel": 1000 * min(t) / mp,
                                "ratio_to_affine": (min(t) / mp) / base} for name, t in times.items()}
        for name, row in results[side].items():
            print(f"{side}x{side} {name:<28} {row['ms_per_image']:9.1f} ms/image {row['ms_per_megapixel']:8.1f} "
                  f"ms/MP  {row['ratio_to_affine']:.3f} x affine", flush=True)
    params = {name: count_parameters(e.model) for name, e in models.items()}
    write_result("model_cost", {"parameters": params, "results": results},
                 params={"threads": args.threads, "repeats": args.repeats, "model": args.model})


if __name__ == "__main__":
    main()
