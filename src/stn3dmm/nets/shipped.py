"""The trained localiser that ships in the package: its weights and its card.

Owns :func:`load_shipped`, :func:`export_shipped` (a training checkpoint -> the package's
``weights/localiser.pt`` + ``weights/localiser.json``) and :data:`WEIGHTS_DIR`.

The weights file holds a plain state dict (tensors only), read with ``weights_only=True``. The
card (JSON) says what the network is (backbone, input size, width, norm, coefficients), which
morphable model its theta is for, how a face box frames its first crop, and where it came from:
the data, the recipe, the commit, the scores and the licence terms that travel with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS, CARD = "localiser.pt", "localiser.json"
#: card keys the loader needs
REQUIRED = ("backbone", "image_size", "width", "norm", "n_id", "n_exp")


def load_shipped(folder=None):
    """(localiser in eval mode, card dict) from ``folder`` (default: the package's own).

    Raises:
        ValueError: no trained localiser there, or a card / weights file that does not describe
            one network (naming the file and the problem).
    """
    from .localiser import build_localiser

    folder = Path(folder) if folder else WEIGHTS_DIR
    wpath, cpath = folder / WEIGHTS, folder / CARD
    if not (wpath.is_file() and cpath.is_file()):
        raise ValueError(f"{folder}: no trained localiser here ({WEIGHTS} and {CARD} are needed)")
    try:
        card = json.loads(cpath.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{cpath}: unreadable localiser card ({e})") from None
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ValueError(f"{cpath}: the card lacks {', '.join(missing)}")
    net = build_localiser(card["backbone"], n_id=int(card["n_id"]), n_exp=int(card["n_exp"]),
                          image_size=int(card["image_size"]), width=float(card["width"]), norm=card["norm"] or None)
    try:
        state = torch.load(wpath, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as e:   # a damaged or foreign file: say which, never a bare torch traceback
        raise ValueError(f"{wpath}: not the weights of the {card['backbone']} localiser its card describes "
                         f"({type(e).__name__}: {str(e)[:200]})") from None
    return net.eval(), card


def export_shipped(state_dict: dict, card: dict, folder=None) -> Path:
    """Write the weights (float32 state dict) and the card into ``folder`` (default: the
    package's), each to a temporary name first, then renamed into place."""
    folder = Path(folder) if folder else WEIGHTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ValueError(f"the card lacks {', '.join(missing)}")
    state = {k: (v.float() if v.is_floating_point() else v).clone() for k, v in state_dict.items()}
    tmp = folder / (WEIGHTS + ".tmp")
    torch.save(state, tmp)
    tmp.replace(folder / WEIGHTS)
    tmp = folder / (CARD + ".tmp")
    tmp.write_text(json.dumps(card, indent=1) + "\n")
    tmp.replace(folder / CARD)
    return folder / WEIGHTS


__all__ = ["load_shipped", "export_shipped", "WEIGHTS_DIR", "WEIGHTS", "CARD", "REQUIRED"]
