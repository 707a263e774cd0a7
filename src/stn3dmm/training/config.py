"""The training configuration: defaults, the TOML file, ``section.key=value`` overrides, checks.

Owns :data:`DEFAULTS` (every setting of ``stn3dmm train`` and its default), :func:`load_config`
(file, then overrides, each value checked against its default's type by :func:`check_value`;
TOML only), :func:`check_config` (values the run can use: counts, names, data paths) and
:func:`check_batch` (batch settings the step can use), and, for resuming, a checkpoint's
configuration (:func:`config_from_checkpoint`) and how it differs from the run's
(:func:`config_differences`; the settings free to change are :data:`RESUME_FREE`). ``data.textures`` names a
folder of photos or ``stn3dmm flatten`` outputs for the synthetic textures, ``data.photo_fraction``
the share of identities using them (negative: the default, 0.3), ``data.yaw_range`` the largest
|yaw| drawn, degrees (negative: the default, 75), and for ``data.kind = "fitted"``
``data.roll_range`` the largest roll of its crops and renders (negative: the default, 25) and
``data.shift`` / ``data.scale_jitter`` its crops' framing jitter (fractions of the side; negative:
the defaults, 0.06 and 0.12).
``stn.depth_exact`` chooses the depth test's exact ray refinement for the training mask (off by default, see :func:`depth_options`).
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path

from ..stn.losses import ORIGINAL_WEIGHTS
from ..core.defaults import LOCALISER_SIZE

DEFAULTS = {
    "model": {"path": "", "n_id": 10, "n_exp": 10},
    "localiser": {"backbone": "resnet18", "image_size": LOCALISER_SIZE, "norm": "", "width": 1.0, "pretrained": "",
                  "init": ""},
    "stn": {"visibility": "depth", "out_res": 0, "depth_exact": False},
    "data": {"kind": "synthetic", "path": "", "image_root": "", "size": 0, "n_identities": 400, "views": 6,
             "seed": 0, "identity_offset": 0, "prerender": True, "landmark_set": "aflw21", "points": "",
             "textures": "", "photo_fraction": -1.0, "yaw_range": -1.0, "photos": "", "split": "train",
             "real_views": 1, "profiled_views": 3, "grid_step": 4, "head_share": 0.0,
             "roll_range": -1.0, "shift": -1.0, "scale_jitter": -1.0, "degrade": 0.0, "ibug_share": -1.0},
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
#: optim.name and optim.schedule (after the warm-up: cosine decay to 0 at train.steps, or constant).
OPTIMISERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
#: data.kind: every kind :func:`stn3dmm.training.batches.build_dataset` reads, and those that
#: read files from data.path ("demo" has a default; "synthetic" renders).
DATA_KINDS = ("synthetic", "umdfaces", "300w-lp", "aflw2000-3d", "mat68", "folder", "photos", "fitted", "demo")
PATH_KINDS = ("umdfaces", "300w-lp", "aflw2000-3d", "mat68", "folder", "photos", "fitted")
#: The settings that may change when a run is resumed: they change how long it runs, where and
#: how often it writes, and on what hardware, not what it learns. Every other setting of the
#: checkpoint must match the run's (:func:`config_differences`).
RESUME_FREE = ("train.steps", "train.out", "train.device", "train.threads", "train.log_every",
               "train.image_every", "train.ckpt_every", "train.keep",
               "localiser.init")     # read only when a run starts; a resume takes the checkpoint's weights

# (section, key) -> (smallest value, what the smallest value means, or "")
_AT_LEAST = {
    ("train", "steps"): (1, ""), ("train", "batch"): (1, ""), ("train", "log_every"): (1, ""),
    ("train", "ckpt_every"): (0, "0: only at the end"), ("train", "image_every"): (0, "0: never"),
    ("train", "keep"): (0, "0: keep every step file"), ("train", "threads"): (0, "0: torch's default"),
    ("optim", "warmup"): (0, "0: no warm-up"), ("optim", "lr"): (0, ""), ("optim", "weight_decay"): (0, ""),
}

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
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    """Refuse (ValueError) values of the right type that the run cannot use, before any work:
    counts below their least (``train.steps`` = 0 would train nothing and exit 0, ``log_every``
    = 0 divides by zero), unknown names (``optim.schedule``, ``optim.name``, ``data.kind``), a data
    kind that reads files without ``data.path``."""
    for (sec, key), (least, meaning) in _AT_LEAST.items():
        v = cfg[sec][key]
        if not (v >= least and math.isfinite(v)):
            why = f" ({meaning})" if meaning else ""
            raise ValueError(f"{sec}.{key} must be at least {least}{why}, got {v!r}")
    for key, allowed in (("name", OPTIMISERS), ("schedule", SCHEDULES)):
        if cfg["optim"][key] not in allowed:
            raise ValueError(f"optim.{key} must be one of {', '.join(allowed)}, got {cfg['optim'][key]!r}")
    check_data(cfg["data"])


def check_data(spec: dict, path_option: str = "data.path") -> None:
    """Refuse a [data] section whose kind is unknown, or which reads files but names none
    (an empty path would read the current folder). ``path_option``: how the user sets the path,
    for the message (``--path`` for ``stn3dmm evaluate``)."""
    kind = spec.get("kind")
    if kind not in DATA_KINDS:
        raise ValueError(f"data.kind must be one of {', '.join(DATA_KINDS)}, got {kind!r}")
    if kind in PATH_KINDS and not str(spec.get("path") or "").strip():
        raise ValueError(f"data.kind = {kind!r} reads its images from a file or folder, but no {path_option} "
                         "is given")


def _flat(cfg: dict) -> dict:
    return {f"{sec}.{k}": v for sec, vals in cfg.items() if isinstance(vals, dict) for k, v in vals.items()}


def config_from_checkpoint(text: str, where: str) -> dict:
    """A checkpoint's configuration (its JSON text) as a full config: DEFAULTS updated by the
    checkpoint's known settings, each type-checked (settings a later version added take their
    defaults; unknown ones are ignored). ValueError naming ``where`` if it is not one."""
    import json

    try:
        saved = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{where}: the checkpoint's configuration is not valid JSON ({e})") from None
    if not isinstance(saved, dict) or not all(isinstance(v, dict) for v in saved.values()):
        raise ValueError(f"{where}: the checkpoint's configuration is not a set of [sections]")
    cfg = copy.deepcopy(DEFAULTS)
    for sec, vals in saved.items():
        for k, v in vals.items():
            if sec in cfg and k in cfg[sec]:
                cfg[sec][k] = check_value(f"{sec}.{k}", v, DEFAULTS[sec][k], f"{where} (its configuration)")
    return cfg


def config_differences(run: dict, saved: dict, free=RESUME_FREE) -> list[tuple[str, object, object]]:
    """``(key, saved value, run value)`` of every setting that differs between a checkpoint's
    configuration and a resumed run's, except the ``free`` ones (:data:`RESUME_FREE`)."""
    a, b = _flat(saved), _flat(run)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if k not in free and a.get(k) != b.get(k)]


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


__all__ = ["DEFAULTS", "PAIRS", "OPTIMISERS", "SCHEDULES", "DATA_KINDS", "PATH_KINDS", "RESUME_FREE", "check_value",
           "load_config", "check_config", "check_data", "check_batch", "data_overrides", "config_from_checkpoint",
           "config_differences"]
