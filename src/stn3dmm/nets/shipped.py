"""The trained localiser that ships in the package: its weights, their ONNX graphs and its card.

Owns :func:`load_shipped`, :func:`load_shipped_refiner`, :func:`load_shipped_onnx`,
:func:`export_shipped` (a training checkpoint -> the package's ``weights/localiser.pt`` +
``weights/localiser.json``, the refiner's ``weights/refiner.pt``, and each network's ONNX graph,
``localiser.onnx`` and ``refiner.onnx``) and :data:`WEIGHTS_DIR`.

The refiner is a second network of the same architecture for one more pass after the cascade
(:class:`~stn3dmm.fitting.localiser.LocaliserFitter`); the card's ``refiner`` entry says where it
came from. A folder without one holds a one-network localiser.

The weights file holds a plain state dict (tensors only), read with ``weights_only=True``. The
ONNX graphs are the same networks for onnxruntime, the fast path on the CPU
(:mod:`stn3dmm.nets.runtime`); the card holds each graph's SHA-256, written with the weights, so a
graph left over from other weights is refused rather than run. The
card (JSON) says what the network is (backbone, input size, width, norm, coefficients), which
morphable model its theta is for, how a face box frames its first crop, and where it came from:
the data, the recipe, the commit, the scores and the licence terms that travel with it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS, CARD, REFINER = "localiser.pt", "localiser.json", "refiner.pt"
#: each weights file's ONNX graph
GRAPHS = {WEIGHTS: "localiser.onnx", REFINER: "refiner.onnx"}
#: card keys the loader needs
REQUIRED = ("backbone", "image_size", "width", "norm", "n_id", "n_exp")


def load_card(folder=None) -> dict:
    """The card of the trained localiser in ``folder`` (default: the package's), checked for the
    keys the loader needs (ValueError otherwise, naming the file)."""
    return _card(Path(folder) if folder else WEIGHTS_DIR)


def load_shipped(folder=None):
    """(localiser in eval mode, card dict) from ``folder`` (default: the package's own).

    Raises:
        ValueError: no trained localiser there, or a card / weights file that does not describe
            one network (naming the file and the problem).
    """
    folder = Path(folder) if folder else WEIGHTS_DIR
    card = _card(folder)
    return _network(card, folder / WEIGHTS), card


def _card(folder: Path) -> dict:
    """The card of the trained localiser in ``folder``, checked for the keys the loader needs."""
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
    return card


def load_shipped_refiner(folder=None, card: dict | None = None):
    """The refiner in eval mode from ``folder`` (default: the package's), or None where the
    folder holds none; ``card``: the folder's card, if already read (:func:`load_shipped`).

    Raises:
        ValueError: a refiner file that is not the weights of the card's network."""
    folder = Path(folder) if folder else WEIGHTS_DIR
    if not (folder / REFINER).is_file():
        return None
    card = card if card is not None else _card(folder)
    return _network(card, folder / REFINER)


def load_shipped_onnx(folder=None, card: dict | None = None, refiner: bool = False):
    """The localiser's (``refiner``: the refiner's) ONNX graph from ``folder`` (default: the
    package's) as an :class:`~stn3dmm.nets.runtime.OnnxNetwork`, or None where the folder or its
    card holds none; ``card``: the folder's card, if already read.

    Raises:
        ValueError: a graph that is not the one its card names (another export's), or that
            onnxruntime cannot run.
    """
    folder = Path(folder) if folder else WEIGHTS_DIR
    name = GRAPHS[REFINER if refiner else WEIGHTS]
    card = card if card is not None else _card(folder)
    want = card.get("onnx", {}).get(name)
    if want is None or not (folder / name).is_file():
        return None
    from .runtime import OnnxNetwork

    graph = (folder / name).read_bytes()
    if hashlib.sha256(graph).hexdigest() != want:
        raise ValueError(f"{folder / name}: not the graph its card names (SHA-256 differs): exported from other "
                         "weights? Export the weights again (scripts/ship_localiser.py) or delete the file")
    return OnnxNetwork(graph, (int(card["image_size"]),) * 2, name=str(folder / name))


def _network(card: dict, wpath: Path):
    """The card's network with the weights of ``wpath`` (read with ``weights_only=True``), in eval mode."""
    net = _build(card)
    try:
        state = torch.load(wpath, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as e:   # a damaged or foreign file: say which, never a bare torch traceback
        raise ValueError(f"{wpath}: not the weights of the {card['backbone']} localiser its card describes "
                         f"({type(e).__name__}: {str(e)[:200]})") from None
    return net.eval()


def export_shipped(state_dict: dict, card: dict, folder=None, refiner: dict | None = None, onnx: bool = True
                   ) -> Path:
    """Write the weights (float32 state dict), the ``refiner``'s where given, each one's ONNX graph
    (``onnx``; :func:`~stn3dmm.nets.runtime.export_onnx`, which needs ``pip install -e ".[ship]"``)
    and the card with the graphs' SHA-256 into ``folder`` (default: the package's), each to a
    temporary name first, then renamed into place (the card last; without a refiner, or without
    ``onnx``, old files of the kind are removed)."""
    folder = Path(folder) if folder else WEIGHTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ValueError(f"the card lacks {', '.join(missing)}")
    card = {k: v for k, v in card.items() if k != "onnx"}
    for name, weights in ((WEIGHTS, state_dict), (REFINER, refiner)):
        if weights is None:
            (folder / name).unlink(missing_ok=True)
            (folder / GRAPHS[name]).unlink(missing_ok=True)
            continue
        weights = {k: (v.float() if v.is_floating_point() else v).clone() for k, v in weights.items()}
        _write(folder / name, lambda f, w=weights: torch.save(w, f))
        if onnx:
            graph = _graph(card, weights)
            _write(folder / GRAPHS[name], lambda f, g=graph: f.write(g))
            card.setdefault("onnx", {})[GRAPHS[name]] = hashlib.sha256(graph).hexdigest()
        else:
            (folder / GRAPHS[name]).unlink(missing_ok=True)
    _write(folder / CARD, lambda f: f.write((json.dumps(card, indent=1) + "\n").encode()))
    return folder / WEIGHTS


def _build(card: dict):
    """The network the card describes, untrained."""
    from .localiser import build_localiser

    return build_localiser(card["backbone"], n_id=int(card["n_id"]), n_exp=int(card["n_exp"]),
                           image_size=int(card["image_size"]), width=float(card["width"]), norm=card["norm"] or None)


def _graph(card: dict, weights: dict) -> bytes:
    """The ONNX graph of the card's network with ``weights``."""
    from .runtime import export_onnx

    net = _build(card)
    net.load_state_dict(weights)
    return export_onnx(net)


def _write(path: Path, write) -> None:
    """``write(file)`` to a temporary name beside ``path``, then renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    tmp.replace(path)


__all__ = ["load_card", "load_shipped", "load_shipped_refiner", "load_shipped_onnx", "export_shipped", "WEIGHTS_DIR", "WEIGHTS",
           "CARD", "REFINER", "GRAPHS", "REQUIRED"]
