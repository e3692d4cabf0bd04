"""Package a trained run as the bundled default model (``make model``).

    python -m skinray.bundle RUN EVAL_DIR COMMAND DATA_NOTE [--data-licence TEXT] [--dest DIR]
    python -m skinray.bundle --real-photos FOLDER

copies the run's best checkpoint (``model.pt``, ``skinray.json``) into
``skinray/models/default/`` (or ``--dest``), adds to its metadata what it is and how it was made (the command,
the training data and its licence, the evaluation summary), and writes ``MODEL.md`` beside it:
the per-epoch training log and the evaluation report. ``skinray info`` shows the data and its
licence. ``--model`` defaults to this model everywhere
(``skinray.checkpoint.BUNDLED``).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from skinray import checkpoint
from skinray.model import count_parameters

NO_LICENCE = "not recorded (python -m skinray.bundle ... --data-licence TEXT)"


def bundle(run: str, eval_dir: str, command: str, data_note: str,
           dest: Path = checkpoint.BUNDLED_DIR, data_licence: str = NO_LICENCE) -> Path:
    """Copy ``run``'s best model into ``dest`` with its provenance (``command`` rebuilds it,
    ``data_note`` says what its training photos are, ``data_licence`` under which licence they
    are); returns ``dest``."""
    loaded = checkpoint.load(run)  # fails with a clear message if RUN is no checkpoint
    source = Path(loaded.uri)
    evaluation = json.loads((Path(eval_dir) / "metrics.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / checkpoint.MODEL_FILE, dest / checkpoint.MODEL_FILE)
    meta = json.loads((source / checkpoint.META_FILE).read_text())
    cfg = loaded.config
    meta["bundled"] = {
        "what": f"skinray's default model: arch {cfg.model.arch}, {count_parameters(loaded.model):,} parameters",
        "trained_on": f"{data_note}: {cfg.data.source} ({loaded.metrics.get('train_images', '?')} training and "
                      f"{loaded.metrics.get('val_images', '?')} validation images per epoch, "
                      f"{cfg.data.image_size} px), degradations {cfg.degrade}",
        "data_licence": data_licence,
        "command": command,
        "evaluation": {"data": evaluation.get("data"), "images": evaluation.get("images"),
                       "size": evaluation.get("size"), "summary": evaluation.get("summary"),
                       "real_photos": evaluation.get("photos")},
    }
    (dest / checkpoint.META_FILE).write_text(json.dumps(meta, indent=2, default=float))
    (dest / "MODEL.md").write_text(_model_card(meta, loaded.history, Path(eval_dir) / "report.md"))
    checkpoint.load(str(dest))  # the bundled copy loads
    return dest


def _model_card(meta: dict, history: list[dict], report: Path) -> str:
    b = meta["bundled"]
    lines = ["# skinray bundled model", "", b["what"] + ".", "", f"Trained on {b['trained_on']}.", "",
             f"Training data licence: {b.get('data_licence', NO_LICENCE)}.", "",
             "Rebuilt by:", "", "```", b["command"], "```", "", "## Training log", "",
             "Validation PSNR in dB, degraded input -> output, per subset of pairs.", "",
             "| epoch | train loss | val loss | colour faults | camera faults only | clean | s |",
             "|---|---|---|---|---|---|---|"]
    for h in history:
        subsets = " | ".join(f"{h.get(f'val_psnr_input_{k}', float('nan')):.2f} -> "
                             f"{h.get(f'val_psnr_{k}', float('nan')):.2f}" for k in ("colour", "camera", "clean"))
        lines.append(f"| {h['epoch'] + 1} | {h['train_loss']:.4f} | {h['val_loss']:.4f} | {subsets} | "
                     f"{h.get('epoch_seconds', 0):.0f} |")
    lines += ["", "## Evaluation", ""]
    if report.is_file():
        body = report.read_text().split("\n", 1)[-1].replace("\n## ", "\n### ")  # under this title
        lines.append(re.sub(r"\n### Figures\n.*?(?=\n### |\Z)", "\n", body, flags=re.S))
    return "\n".join(lines) + "\n"


REAL_PHOTOS = {"astronaut": None, "astronaut_face": (slice(0, 256), slice(100, 356)), "coffee": None,
               "chelsea": None}  # scikit-image's bundled colour photos (no download), crop boxes


def write_real_photos(folder: str) -> list[str]:
    """Good real photographs that ship with scikit-image, as PNGs in ``folder``: `make model`
    evaluates how much the model changes them (for good photos, any change is harm)."""
    from skimage import data

    from skinray import images, storage

    written = []
    for name, box in REAL_PHOTOS.items():
        photo = getattr(data, name.split("_")[0])()
        photo = photo[box] if box else photo
        uri = storage.join(folder, f"{name}.png")
        storage.write_bytes(uri, images.encode(np.ascontiguousarray(photo), "png"))
        written.append(uri)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--real-photos":
        print(f"[skinray] wrote {len(write_real_photos(argv[1]))} real photos to {argv[1]}")
        return 0
    parser = argparse.ArgumentParser(prog="python -m skinray.bundle", usage=__doc__)
    for name in ("run", "eval_dir", "command", "data_note"):
        parser.add_argument(name)
    parser.add_argument("--data-licence", default=NO_LICENCE)
    parser.add_argument("--dest", type=Path, default=checkpoint.BUNDLED_DIR)
    args = parser.parse_args(argv)
    dest = bundle(args.run, args.eval_dir, args.command, args.data_note, dest=args.dest,
                  data_licence=args.data_licence)
    print(f"[skinray] bundled model written to {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
