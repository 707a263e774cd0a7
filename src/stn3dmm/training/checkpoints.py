"""Training checkpoints on disk: durable atomic writes, written once, loaded safely and checked.

Owns :func:`write_durably` (temporary file, fsync, rename, fsync of the folder),
:func:`copy_durably` (``last.pt``: an independent copy of the newest step file, so that damage
to one is not damage to both), :func:`remove_partial_saves` (the temporary files a killed save
leaves), :func:`load_checkpoint` (``weights_only=True``: no code runs; a file we cannot trust is
refused in our own words; the keys a checkpoint needs are checked), :func:`check_resume_state`,
:func:`load_init_weights` (what ``localiser.init`` names: a checkpoint or a plain weights file)
and :func:`load_weights` (weights that do not fit the network are named, never a torch size-
mismatch traceback). The state itself is :meth:`stn3dmm.training.loop.Trainer.state`.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import torch

from ..core.paths import write_atomically

FORMAT = "stn3dmm-checkpoint-1"
#: Listed when a checkpoint's weights do not fit: this many names of each kind of problem.
_SHOW = 3


def write_durably(path: Path, write) -> Path:
    """Write a file atomically and durably: ``write(f)`` into a temporary file beside it,
    flush + fsync, rename into place, fsync the folder (a crash leaves the old or the new file)."""
    path = write_atomically(path, write, durable=True)
    _fsync_dir(path.parent)
    return path


def copy_durably(src: Path, dst: Path) -> Path:
    """Make ``dst`` an independent copy of ``src``, atomically and durably. Not a hard link:
    with a link, truncating or overwriting one file in place damages the other too."""
    with open(src, "rb") as f:
        return write_durably(Path(dst), lambda out: shutil.copyfileobj(f, out, 1 << 20))


def remove_partial_saves(folder: Path) -> list[Path]:
    """Remove the temporary files that saves killed half-way leave in a checkpoint folder
    (``.step_*.pt.*.tmp``, ``.last.pt.*.tmp``; ``.last.pt.*.link`` from earlier versions).
    Call before any save of this run. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in sorted(folder.iterdir()):
        if re.fullmatch(r"\.(step_\d+|last)\.pt\..+\.(tmp|link)", p.name) and p.is_file():
            try:
                p.unlink()
                gone.append(p)
            except OSError:
                pass
    return gone


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _refusal(path: Path, e: Exception) -> str:
    """Our message for a file torch's ``weights_only`` loader would not load. Torch's own
    advises re-running with ``weights_only=False``: the one thing not to do with a file that
    names code to run, so it is not passed on."""
    text = str(e)
    if "Weights only load failed" not in text:
        first = text.strip().splitlines()[0] if text.strip() else ""
        return f"{path}: not a readable stn3dmm checkpoint ({type(e).__name__}: {first})"
    m = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"(Unsupported operand \d+)", text)
    what = f" (it names {m.group(1)})" if m and m.group(0).startswith("GLOBAL") else (f" ({m.group(1)})" if m else "")
    return (f"{path}: refused: not a readable stn3dmm checkpoint: it holds Python objects other than tensors "
            f"and plain data{what}. stn3dmm checkpoints never do; the file was not written by stn3dmm, or it "
            "was altered. Nothing in it was run.")


def load_checkpoint(path) -> dict:
    """A training checkpoint, loaded with ``weights_only=True`` (no code runs), with the keys
    every use needs checked: ``format``, ``step``, ``model`` (tensors by name) and ``config``
    (JSON text). Raises ValueError with a clear message otherwise."""
    path = Path(path)
    return _checked(_load_safely(path, "checkpoint"), path)


def _checked(ck, path: Path) -> dict:
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"{path}: not an stn3dmm training checkpoint")
    problems = []
    if not isinstance(ck.get("step"), int) or isinstance(ck.get("step"), bool) or ck["step"] < 0:
        problems.append(f"'step' must be a non-negative integer, got {_brief(ck.get('step'))}")
    model = ck.get("model")
    if not _tensors_by_name(model):
        problems.append(f"'model' must be the network's tensors by name, got {_brief(model)}")
    if not isinstance(ck.get("config"), str):
        problems.append(f"'config' must be the run's configuration as JSON text, got {_brief(ck.get('config'))}")
    if problems:
        raise ValueError(f"{path}: a damaged stn3dmm checkpoint: " + "; ".join(problems))
    return ck


def _tensors_by_name(x) -> bool:
    return isinstance(x, dict) and bool(x) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in x.items())


def _load_safely(path: Path, what: str):
    if not path.exists():
        raise ValueError(f"{path}: no such {what}")
    try:
        with warnings.catch_warnings():               # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated files, foreign pickles ...
        raise ValueError(_refusal(path, e)) from None


def load_init_weights(path) -> dict:
    """The network weights a run starts from (``localiser.init``): a training checkpoint's
    ``model``, or a plain weights file (tensors by name, such as the package's own
    ``nets/weights/localiser.pt``). ValueError, naming the file, for anything else."""
    path = Path(path)
    state = _load_safely(path, "checkpoint or weights file")
    if isinstance(state, dict) and state.get("format") == FORMAT:
        return _checked(state, path)["model"]
    if _tensors_by_name(state):
        return state
    raise ValueError(f"{path}: neither an stn3dmm training checkpoint nor a weights file (tensors by name)")


def _brief(x) -> str:
    if x is None:
        return "nothing (missing)"
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__}" + (f" {x!r}" if isinstance(x, (int, float, str)) and len(repr(x)) < 40 else "")


def check_resume_state(ck: dict, path) -> None:
    """Refuse (ValueError) a checkpoint that lacks what resuming restores: the optimiser,
    schedule and scaler states (dicts) and the CPU random state (a uint8 tensor)."""
    problems = []
    for key in ("optim", "sched", "scaler"):
        if not isinstance(ck.get(key), dict):
            problems.append(f"'{key}' must be a state dict, got {_brief(ck.get(key))}")
    optim = ck.get("optim")
    if isinstance(optim, dict) and not (isinstance(optim.get("state"), dict)
                                        and isinstance(optim.get("param_groups"), list)):
        problems.append("'optim' lacks its 'state' and 'param_groups'")
    rng = ck.get("torch_rng")
    if not (isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8 and rng.ndim == 1):
        problems.append(f"'torch_rng' must be the CPU random state (a uint8 tensor), got {_brief(rng)}")
    cuda = ck.get("cuda_rng")
    if cuda is not None and not (isinstance(cuda, list) and all(isinstance(t, torch.Tensor) for t in cuda)):
        problems.append(f"'cuda_rng' must be a list of random states, got {_brief(cuda)}")
    if problems:
        raise ValueError(f"{path}: cannot resume from this checkpoint: " + "; ".join(problems))


def load_weights(net: torch.nn.Module, state: dict, path, what: str = "this run's network") -> None:
    """``net.load_state_dict(state)`` once the names and shapes are known to fit; otherwise a
    ValueError naming the missing, unexpected and mis-shaped weights (a checkpoint of another
    backbone, width or number of components; a damaged file)."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} (needs {tuple(own[k].shape)})" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)):
            if names:
                more = f", ... {len(names) - _SHOW} more" if len(names) > _SHOW else ""
                parts.append(f"{len(names)} {label} ({', '.join(names[:_SHOW])}{more})")
        raise ValueError(f"{path}: the checkpoint's weights do not fit {what}: " + "; ".join(parts)
                         + ". Was it trained with another localiser.backbone, width, norm or model.n_id / n_exp?")
    net.load_state_dict(state)


__all__ = ["FORMAT", "write_durably", "copy_durably", "remove_partial_saves", "load_checkpoint",
           "check_resume_state", "load_weights", "load_init_weights"]
