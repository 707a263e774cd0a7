"""Training curves of the shipped localiser's run beside its ablation (docs picture):

    python scripts/plot_localiser.py runs/lfw_localiser runs/lfw_nosym docs/localiser_training.png

Left: the landmark term per image (a running median over 10 logged steps) of both runs, log
scale. Right: the run's four weighted terms, to show what share each has as training goes.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def rows(run):
    return [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines() if x.strip()]


def smooth(v, k=10):
    v = np.asarray(v, float)
    return np.array([np.median(v[max(0, i - k + 1):i + 1]) for i in range(len(v))])


def main(run, ablation, out):
    r, a = rows(run), rows(ablation)
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    ax[0].plot([x["step"] for x in r], smooth([x["landmark"] for x in r]), label="four losses (shipped)")
    ax[0].plot([x["step"] for x in a], smooth([x["landmark"] for x in a]), label="without symmetry and siamese")
    ax[0].set(yscale="log", xlabel="step (32 images + their mirrors)", ylabel="landmark term per image",
              title="landmark term, running median")
    ax[0].legend(fontsize=8)
    for key in ("landmark", "prior", "symmetry", "siamese"):
        if key in r[0]:
            ax[1].plot([x["step"] for x in r], smooth([x[key] for x in r]), label=key)
    ax[1].set(yscale="log", xlabel="step", ylabel="weighted term per image", title="the shipped run's four terms")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
