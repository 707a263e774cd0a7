"""Plot a training run's curve and its held-out evaluation (README picture):
python scripts/plot_training.py runs/synthetic_small docs/training.png"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main(run, out):
    run = Path(run)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    st = [r["step"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    ax[0].plot(st, [r["landmark"] for r in rows], label="landmark term (per image)")
    ax[0].plot(st, [r["prior"] for r in rows], label="prior term (per image)")
    ax[0].set_yscale("log")
    ax[0].set_xlabel("step (16 images + their mirrors)")
    ax[0].legend()
    ax[0].set_title("training loss", fontsize=10)
    ev = json.loads((run / "eval_heldout.json").read_text())
    keys = ["0-30", "30-60", "60-90", "bucket_mean"]
    x = np.arange(4)
    ax[1].bar(x - 0.2, [ev["nme"][k] for k in keys], 0.4, label="localiser")
    ax[1].bar(x + 0.2, [ev["nme_mean_face"][k] for k in keys], 0.4, label="mean face (start pose)")
    ax[1].set_xticks(x, ["0-30", "30-60", "60-90", "bucket mean"])
    ax[1].set_xlabel("|yaw| (degrees)")
    ax[1].set_ylabel("NME %")
    ax[1].legend()
    ax[1].set_title(f"held-out synthetic identities ({ev['images']} images)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
