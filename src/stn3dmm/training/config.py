"""The training configuration: defaults, the TOML file, ``section.key=value`` overrides, checks.

Owns :data:`DEFAULTS` (every setting of ``stn3dmm train`` and its default), :func:`load_config`
(file, then overrides, each value checked against its default's type by :func:`check_value`;
TOML only) and :func:`check_batch` (batch settings the step can use). ``data.textures`` names a
folder of photos or ``stn3dmm flatten`` outputs for the synthetic textures, ``data.photo_fraction``
the share of identities using them (negative: the default, 0.3). ``stn.depth_exact`` chooses the
depth test's exact ray refinement for the training mask (off by default, see :func:`depth_options`).
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from ..stn.losses import ORIGINAL_WEIGHTS
from ..core.defaults import LOCALISER_SIZE

DEFAULTS = {
    "model": {"path": "", "n_id": 10, "n_exp": 10},
    "localiser": {"backbone": "resnet18", "image_size": LOCALISER_SIZE, "norm": "", "width": 1.0, "pretrained": ""},
    "stn": {"visibility": "depth", "out_res": 0, "depth_exact": False},
    "data": {"kind": "synthetic", "path": "", "image_root": "", "size": 0, "n_identities": 400, "views": 6,
             "seed": 0, "identity_offset": 0, "prerender": True, "landmark_set": "aflw21", "points": "",
             "textures": "", "photo_fraction": -1.0},
    "loss": dict(ORIGINAL_WEIGHTS),
    "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "momentum": 0.9, "head_lr_weight": 4.0,
              "head_lr_bias": 8.0, "warmup": 100, "schedule": "cosine", "clip": 10.0, "amp": True},
    "train": {"steps": 1000, "batch": 32, "mirror": True, "pairs": "mirror", "seed": 0, "out": "runs/train",
              "log_every": 10, "image_every": 200, "ckpt_every": 200, "keep": 3, "device": "auto",
              "threads": 0},
}


#: train.pairs: "mirror" (the siamese loss compares an image with its flip, when train.mirror)
#: or "identity" (also two different images of one person: consecutive batch entries).
PAIRS = ("mirror", "identity")

# ----------------------------------------------------------------------------- config

def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text                                   # a bare string


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def check_value(key: str, value, default, where: str, raw: str | None = None):
    """``value`` for setting ``key`` as the type of its default (int / float / str / bool; any
    scalar where the default is None), or ValueError naming ``where`` and the key. Integral
    floats pass as ints and ints as floats; an override's ``raw`` text is taken as it is where
    a string is expected (``data.path=2024`` is the folder "2024")."""
    if default is None:
        if isinstance(value, (dict, list)):
            raise ValueError(f"{where}: {key} must be a single value, got {value!r}")
        return value
    kind = type(default)
    if kind is str:
        if isinstance(value, str):
            return value
        if raw is not None:
            return raw.strip()
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    else:
        return value
    raise ValueError(f"{where}: {key} must be {_KINDS[kind]} (like its default {default!r}), "
                     f"got {value!r} ({type(value).__name__})")


def load_config(path=None, overrides=()) -> dict:
    """DEFAULTS, updated by the TOML file ``path`` and then by ``section.key=value`` strings;
    every value is checked against its default's type (:func:`check_value`)."""
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            raise ValueError(f"{path}: training configurations are TOML only (a .toml file with [sections] "
                             "of key = value; see configs/synthetic_small.toml), not YAML")
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"{path}: cannot read the training configuration ({e})") from None
        for sec, vals in data.items():
            if sec not in cfg or not isinstance(vals, dict):
                raise ValueError(f"{path}: unknown section [{sec}] (known: {', '.join(cfg)})")
            for k, v in vals.items():
                if k not in cfg[sec]:
                    raise ValueError(f"{path}: unknown key {sec}.{k} (known: {', '.join(cfg[sec])})")
                cfg[sec][k] = check_value(f"{sec}.{k}", v, DEFAULTS[sec][k], str(path))
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override {item!r} must look like section.key=value")
        key, text = item.split("=", 1)
        sec, k = key.split(".", 1)
        if sec not in cfg or k not in cfg[sec]:
            raise ValueError(f"unknown setting {key!r}")
        cfg[sec][k] = check_value(key, _parse_value(text), DEFAULTS[sec][k], f"override {item!r}", raw=text)
    return cfg


def depth_options(stn: dict) -> dict:
    """``visibility_depth`` options for the training mask. Without ``stn.depth_exact`` it is the
    buffer-only depth test, without the exact ray refinement: in training the mask only weights
    the symmetry and siamese terms, the buffer alone already agrees closely with exact ray
    casting, and the refinement would add a large share of a step's cost."""
    return {} if stn.get("depth_exact") else {"pixel": 1.0, "exact": False}


def check_batch(train: dict, world: int) -> None:
    """Refuse, before any work, batch settings the step cannot use: the global batch splits
    evenly over the processes, and with identity pairs every process gets whole pairs."""
    b, pairs = int(train["batch"]), train["pairs"]
    if pairs not in PAIRS:
        raise ValueError(f"train.pairs must be one of {', '.join(PAIRS)}, got {pairs!r}")
    if b < 1:
        raise ValueError(f"train.batch must be at least 1, got {b}")
    if b % world:
        raise ValueError(f"train.batch ({b}) must be divisible by the number of processes ({world})")
    if pairs == "identity" and b % (2 * world):
        raise ValueError(f"train.pairs = 'identity': train.batch ({b}) must be divisible by 2 x the number of "
                         f"processes ({2 * world}), so that every process gets whole pairs")




def data_overrides(kind: str | None, path: str | None, items) -> dict:
    """A [data] section from command-line options: ``kind``, ``path`` and ``KEY=VALUE`` items
    (``data.`` prefixes allowed), each checked against the defaults' keys and types."""
    spec = {}
    if kind:
        spec["kind"] = kind
    if path:
        spec["path"] = path
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value (a [data] key)")
        k, v = item.split("=", 1)
        k = k.strip().removeprefix("data.")
        if k not in DEFAULTS["data"]:
            raise ValueError(f"--set {item!r}: unknown [data] key {k!r} (known: {', '.join(DEFAULTS['data'])})")
        spec[k] = check_value(f"data.{k}", _parse_value(v), DEFAULTS["data"][k], f"--set {item!r}", raw=v)
    return spec


__all__ = ["DEFAULTS", "PAIRS", "check_value", "load_config", "check_batch", "data_overrides"]
