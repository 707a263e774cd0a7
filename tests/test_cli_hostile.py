"""A corpus of hostile and unlucky input to show-model, train and evaluate (issue 11, items 7-9
and 11-16): for each case, the exit code, a clear message, and no traceback.

Everything runs on a 16 x 16 synthetic model and a localiser trained for 2 steps at 32 px, once
for the module; the cases run in this process through :func:`stn3dmm.cli.main`.
"""

import json
import os
import shutil
import warnings
import zipfile

import numpy as np
import pytest
import torch

from stn3dmm.cli import main
from stn3dmm.model import save_model
from testkit.model_files import rewrite_npz as _rewrite
from testkit.synthetic_models import make_face_model

TINY = ["data.n_identities=2", "data.views=2", "data.size=32", "localiser.image_size=32",
        "localiser.backbone='mobilenet'", "localiser.width=0.25", "localiser.norm='group'", "stn.out_res=16",
        "train.batch=2", "train.threads=1", "optim.warmup=1", "model.n_id=2", "model.n_exp=1", "train.log_every=1",
        "train.image_every=0"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """train.threads = 1 sets torch's thread count for the whole process: put it back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _claims_2gb(src, dst):
    """``src`` with the zip directory claiming 2 GiB for its ``basis_id`` member (12 MB would do too)."""
    data = bytearray(open(src, "rb").read())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        n = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + n] == b"basis_id.npy":
            data[at + 24:at + 28] = (2 ** 31).to_bytes(4, "little")
        at = data.find(b"PK\x01\x02", at + 4)
    open(dst, "wb").write(bytes(data))


def _model_files(d):
    m = make_face_model(16, n_id=2, n_exp=1)
    good = save_model(m, d / "m.npz")
    n = m.n_vertices
    _rewrite(good, d / "nan_uv.npz", uv=np.full((16, 16, 2), np.nan, np.float32))
    _rewrite(good, d / "zero_mirror.npz", mirror=np.zeros(n, np.int64))
    _rewrite(good, d / "cycle_mirror.npz", mirror=np.roll(np.arange(n), 1))
    _claims_2gb(good, d / "claims.npz")
    _rewrite(good, d / "bad_source_uv.npz", source_uv=np.zeros(7), source_faces=np.zeros((2, 3), np.int64))
    _rewrite(good, d / "bad_source_faces.npz", source_uv=np.zeros((4, 2)), source_faces=np.full((2, 3), 9))
    _rewrite(good, d / "half_source.npz", source_uv=np.zeros((4, 2)))
    m.uv = None
    save_model(m, d / "no_uv.npz")
    return good


def _checkpoints(run, d):
    """Damaged copies of ``run``'s last checkpoint: the right format, the wrong contents."""
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    some = next(k for k, v in ck["model"].items() if v.ndim == 4)
    variants = {
        "no_model": {k: v for k, v in ck.items() if k != "model"},
        "wrong_shape": dict(ck, model=dict(ck["model"], **{some: torch.zeros(3, 1, 1, 1)})),
        "no_optim": {k: v for k, v in ck.items() if k != "optim"},
        "bad_moments": dict(ck, optim={**ck["optim"], "state": {i: {k: (v[:1] if v.ndim else v) for k, v in s.items()}
                                                                for i, s in ck["optim"]["state"].items()}}),
        "bad_config": dict(ck, config="{not json"),
    }
    for name, value in variants.items():
        torch.save(value, d / f"{name}.pt")

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(d / "pwned"),))

    torch.save(dict(ck, extra=Evil()), d / "evil.pt")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    model = _model_files(d)
    run = d / "run"
    n = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # no photo textures for a 16 x 16 model: expected
            assert main(["train", "--quiet", "--set", f"train.out='{run}'", "--set", "train.steps=2", "--set",
                         f"model.path='{model}'", *sum((["--set", s] for s in TINY), [])]) == 0
    finally:
        torch.set_num_threads(n)
    _checkpoints(run, d)
    (d / "empty").mkdir()
    return d


def _train(d, out, *sets, extra=()):
    args = ["train", "--quiet", "--set", f"train.out='{d / out}'", "--set", "train.steps=3",
            "--set", f"model.path='{d / 'm.npz'}'"]
    return args + sum((["--set", s] for s in (*TINY, *sets)), []) + list(extra)


def _expand(d, argv):
    return [str(d / a[2:]) if a.startswith("@/") else a for a in argv]


CASES = {
    # model files (items 7-9)
    "nan uv": (["show-model", "@/nan_uv.npz", "--out", "@/pics"], 2, "nan_uv.npz: array 'uv' has NaN"),
    "nan uv, flatten": (["flatten", "@/none.jpg", "--out", "@/flat", "--model", "@/nan_uv.npz"], 2,
                        "nan_uv.npz: array 'uv' has NaN"),
    "all-zero mirror": (["show-model", "@/zero_mirror.npz", "--out", "@/pics"], 2, "'mirror' must be a permutation"),
    "mirror not an involution": (["show-model", "@/cycle_mirror.npz", "--out", "@/pics"], 2,
                                 "'mirror' must be its own inverse"),
    "claims 2 GB": (["show-model", "@/claims.npz", "--out", "@/pics"], 2,
                    "claims.npz: its arrays claim 2,048.0 MiB uncompressed, more than the 1,024.0 MiB"),
    "malformed source_uv": (["show-model", "@/bad_source_uv.npz", "--out", "@/pics1"], 0,
                            "note: skipped uv_layout.png (the source mesh's UV map): source_uv must be (M, 2)"),
    "malformed source_faces": (["show-model", "@/bad_source_faces.npz", "--out", "@/pics2"], 0,
                               "skipped uv_layout.png (the source mesh's UV map): source_faces indices must lie"),
    "source_uv alone": (["show-model", "@/half_source.npz", "--out", "@/pics3"], 0,
                        "skipped uv_layout.png (the source mesh's UV map): only one of them"),
    "no uv": (["show-model", "@/no_uv.npz", "--out", "@/pics4"], 0, "note: skipped uv_grid_area.png: the model has no uv"),
    "too many faces": (["show-model", "@/m.npz", "--out", "@/pics5", "--n-random", "5000"], 2,
                       "--n-random must be 0 to 24"),
    # training options (items 11 and 12)
    "log_every 0": ("train:train.log_every=0", 2, "train.log_every must be at least 1, got 0"),
    "threads -1": ("train:train.threads=-1", 2, "train.threads must be at least 0"),
    "folder without path": ("train:data.kind='folder'", 2, "data.kind = 'folder' reads its images from a file or "
                                                           "folder, but no data.path is given"),
    "folder missing": ("train:data.kind='folder'|data.path='/nonexistent/x'", 2,
                       "the data set has no usable items; left out:\n  /nonexistent/x: does not exist"),
    "folder empty": ("train:data.kind='folder'|data.path='@/empty'", 2, "empty': the data set has no usable items"),
    "steps 0": ("train:train.steps=0", 2, "train.steps must be at least 1, got 0"),
    "negative every": ("train:train.image_every=-5", 2, "train.image_every must be at least 0"),
    "negative ckpt_every": ("train:train.ckpt_every=-1", 2, "train.ckpt_every must be at least 0"),
    "warmup -3": ("train:optim.warmup=-3", 2, "optim.warmup must be at least 0 (0: no warm-up), got -3"),
    "bogus schedule": ("train:optim.schedule=bogus", 2, "optim.schedule must be one of cosine, constant"),
    # evaluate options (item 11)
    "batch -1": (["evaluate", "--checkpoint", "@/run/checkpoints/last.pt", "--batch", "-1"], 2,
                 "--batch (images per forward pass) must be at least 1, got -1"),
    "batch 0": (["evaluate", "--checkpoint", "@/run/checkpoints/last.pt", "--batch", "0"], 2,
                "--batch (images per forward pass) must be at least 1, got 0"),
    "evaluate missing folder": (["evaluate", "--checkpoint", "@/run/checkpoints/last.pt", "--device", "cpu",
                                 "--data", "folder", "--path", "/nonexistent/x"], 2, "/nonexistent/x: does not exist"),
    "evaluate folder without path": (["evaluate", "--checkpoint", "@/run/checkpoints/last.pt", "--data", "folder"], 2,
                                     "but no --path is given"),
    # damaged and hostile checkpoints (items 14 and 16)
    "evaluate hostile": (["evaluate", "--checkpoint", "@/evil.pt"], 2, "evil.pt: refused: not a readable stn3dmm "
                                                                       "checkpoint: it holds Python objects"),
    "evaluate no model": (["evaluate", "--checkpoint", "@/no_model.pt"], 2, "'model' must be the network's tensors"),
    "evaluate wrong shape": (["evaluate", "--checkpoint", "@/wrong_shape.pt", "--device", "cpu"], 2,
                             "wrong_shape.pt: the checkpoint's weights do not fit the mobilenet localiser"),
    "evaluate bad config": (["evaluate", "--checkpoint", "@/bad_config.pt"], 2,
                            "the checkpoint's configuration is not valid JSON"),
    "resume hostile": ("train:|--resume=@/evil.pt", 2, "evil.pt: refused: not a readable stn3dmm checkpoint"),
    "resume no optimiser": ("train:|--resume=@/no_optim.pt", 2, "no_optim.pt: cannot resume from this checkpoint: "
                                                                "'optim' must be a state dict"),
    "resume wrong shape": ("train:|--resume=@/wrong_shape.pt", 2, "the checkpoint's weights do not fit this run's"),
    "resume bad moments": ("train:|--resume=@/bad_moments.pt", 2, "the checkpoint's training state does not fit "
                                                                  "this run (ValueError: optimiser state"),
    # resume with a changed configuration (item 13)
    "resume changed batch": ("train:train.batch=4|--resume=@/run/checkpoints/last.pt", 2,
                             "differs from the checkpoint's in 1 setting(s): train.batch: 2 in the checkpoint, 4 now"),
    "resume changed backbone": ("train:localiser.backbone='resnet18'|optim.lr=0.01|--resume=@/run/checkpoints/last.pt",
                                2, "localiser.backbone: 'mobilenet' in the checkpoint, 'resnet18' now; optim.lr: "
                                   "0.001 in the checkpoint, 0.01 now. Resume with the checkpoint's settings"),
    "resume forced backbone": ("train:localiser.backbone='resnet18'|--resume=@/run/checkpoints/last.pt|--force", 2,
                               "the checkpoint's weights do not fit this run's network"),
}


def _argv(d, spec, case):
    if isinstance(spec, list):
        return _expand(d, spec)
    sets, extra = [], []
    for part in spec.removeprefix("train:").split("|"):
        if part.startswith("--"):
            extra += part.replace("@/", f"{d}/").split("=", 1)
        elif part:
            sets.append(part.replace("@/", f"{d}/"))
    return _train(d, f"out_{case.replace(' ', '_')}", *sets, extra=extra)


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_gets_a_clear_message_and_no_traceback(corpus, case, capsys):
    spec, code, message = CASES[case]
    argv = _argv(corpus, spec, case)
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == code, err[-2000:]
    assert message in err, err[-2000:]
    assert "Traceback" not in err and "weights_only" not in err
    assert not (corpus / "pwned").exists()
    if code == 2:                                   # one error line, and nothing written
        assert f"stn3dmm {argv[0]}: error: " in err
        out = corpus / f"out_{case.replace(' ', '_')}" if argv[0] == "train" else \
            (argv[argv.index("--out") + 1] if "--out" in argv else None)
        assert out is None or not os.path.exists(out), out


def test_pictures_still_drawn_when_one_is_skipped(corpus, capsys):
    assert main(["show-model", str(corpus / "no_uv.npz"), "--out", str(corpus / "pics6"), "--n-random", "1"]) == 0
    assert sorted(p.name for p in (corpus / "pics6").iterdir()) == ["geometry_image.png", "landmarks.png",
                                                                     "random_faces.png"]


def test_forced_resume_warns_cleans_up_and_logs_each_step_once(corpus, capsys):
    run = corpus / "forced"
    shutil.copytree(corpus / "run", run)
    ck = run / "checkpoints"
    (ck / ".step_0000003.pt.x7f2a.tmp").write_bytes(b"half a save")        # a save killed half-way
    with open(run / "metrics.jsonl", "a") as f:                             # logged after the last save
        f.write(json.dumps({"step": 3, "total": 1.0}) + "\n" + '{"step": 4, "to')
    rc = main(_train(corpus, "forced", "optim.lr=0.002", extra=["--resume", "--force"]))
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    assert "warning: resuming anyway (--force)" in err and "optim.lr: 0.001 in the checkpoint, 0.002 now" in err
    assert "removed .step_0000003.pt.x7f2a.tmp, left by a save that was killed" in err
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert sorted(p.name for p in ck.iterdir()) == ["last.pt", "step_0000002.pt", "step_0000003.pt"]
    assert os.stat(ck / "last.pt").st_ino != os.stat(ck / "step_0000003.pt").st_ino
    with zipfile.ZipFile(ck / "last.pt") as z:                               # a whole checkpoint of its own
        assert z.testzip() is None
