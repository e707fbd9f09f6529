"""Files that cannot be silently damaged: full Explanation checksums, stale temporaries, NaN checkpoints."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from xaikit._util import STALE_AFTER_S, atomic_path, atomic_write, clean_stale_temporaries
from xaikit.checkpoint import load_checkpoint, save_checkpoint
from xaikit.errors import CheckpointError, ExplanationError
from xaikit.models import build_model
from xaikit.saliency import Explanation

ROOT = Path(__file__).resolve().parents[1]


def _explanation() -> Explanation:
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.99985, 0.00015], [0.3, 0.7]])
    return Explanation(torch.randn(2, 8, 8, generator=g), "gradient", {"abs": False, "n": 3}, "pred",
                       torch.tensor([0, 1]), torch.tensor([0, 1]), probs, ["a", "b"], torch.tensor([0, 1]),
                       None, "sum", {"torch": torch.__version__})


def test_a_flipped_bit_in_probs_inside_the_file_is_detected(tmp_path):
    exp = _explanation()
    path = tmp_path / "e.pt"
    exp.save(path)
    data = bytearray(path.read_bytes())
    at = bytes(data).find(exp.probs.numpy().tobytes())
    assert at >= 0  # torch stores tensor bytes uncompressed: a flip there is not caught by the container
    data[at + 2] ^= 0x40  # the top mantissa bit: 0.99985 -> 0.74985, the example
    path.write_bytes(bytes(data))
    flipped = torch.load(path, weights_only=True)["probs"]
    assert flipped[0, 0].item() == pytest.approx(0.74985, abs=1e-5)  # loads "fine" without a full checksum
    with pytest.raises(ExplanationError, match="damaged.*checksum"):
        Explanation.load(path)


@pytest.mark.parametrize("field,change", [
    ("probs", lambda v: v * 1.0000001), ("targets", lambda v: v.flip(0)), ("preds", lambda v: v + 1),
    ("image_ids", lambda v: ["b", "a"]), ("params", lambda v: {**v, "n": 4}), ("method", lambda v: "gradcam"),
    ("labels", lambda v: None), ("target_policy", lambda v: "label"), ("reduction", lambda v: "abs_sum"),
    ("versions", lambda v: {}), ("maps", lambda v: v.clone().index_put_((torch.tensor(0),), torch.zeros(8, 8))),
])
def test_every_stored_entry_is_covered_by_the_checksum(tmp_path, field, change):
    data = _explanation().to_dict()
    data[field] = change(data[field])
    torch.save(data, tmp_path / "e.pt")
    with pytest.raises(ExplanationError, match="checksum"):
        Explanation.load(tmp_path / "e.pt")


def test_round_trip_and_format_1_files_still_load_with_a_warning(tmp_path):
    exp = _explanation()
    exp.save(tmp_path / "e.pt")
    back = Explanation.load(tmp_path / "e.pt")
    assert torch.equal(back.probs, exp.probs) and back.params == exp.params and back.image_ids == ["a", "b"]
    old = exp.to_dict()
    old.pop("sha256")
    old["format_version"] = 1
    from xaikit.saliency.explanation import _digest
    old["maps_sha256"] = _digest(old["maps"])
    torch.save(old, tmp_path / "v1.pt")
    with pytest.warns(UserWarning, match="format 1.*maps only"):
        assert torch.equal(Explanation.load(tmp_path / "v1.pt").maps, exp.maps)
    incomplete = exp.to_dict()
    del incomplete["probs"]
    torch.save(incomplete, tmp_path / "inc.pt")
    with pytest.raises(ExplanationError, match=r"lacks \['probs'\]"):
        Explanation.load(tmp_path / "inc.pt")


_KILLED_SAVE = """
import os, signal, sys
from xaikit._util import atomic_write, atomic_path
target = sys.argv[1]
if sys.argv[2] == "stream":
    with atomic_write(target) as fh:
        fh.write(b"half a file")
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
else:
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"half a file")
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("kind,name", [("stream", "result.pt"), ("path", "map.nii.gz")])
def test_a_save_killed_mid_way_leaves_a_temporary_that_the_next_save_removes(tmp_path, kind, name):
    target = tmp_path / name
    target.write_bytes(b"old complete file")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(target), kind], env=env, timeout=60)
    assert proc.returncode == -9
    left = [p for p in tmp_path.iterdir() if p != target]
    assert len(left) == 1 and left[0].name.startswith(".")  # SIGKILL: no finally ran
    assert target.read_bytes() == b"old complete file"     # the old file is intact
    with pytest.warns(UserWarning, match="interrupted save"):
        if kind == "stream":
            with atomic_write(target) as fh:
                fh.write(b"new")
        else:
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name] and target.read_bytes() == b"new"


def test_a_live_writers_temporary_is_left_alone_but_an_ancient_one_is_not(tmp_path):
    target = tmp_path / "r.pt"
    with atomic_write(target) as fh:       # our own process is alive: its temporary is not stale
        fh.write(b"x")
        assert clean_stale_temporaries(target) == []
        mine = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
        assert len(mine) == 1
    foreign = tmp_path / ".r.pt.~otherhost-123.abcd.tmp"
    foreign.write_bytes(b"x")
    assert clean_stale_temporaries(target) == []   # another host's writer may be alive
    old = time.time() - STALE_AFTER_S - 60
    os.utime(foreign, (old, old))
    with pytest.warns(UserWarning, match="interrupted save"):
        assert clean_stale_temporaries(target) == [foreign]
    unrelated = tmp_path / ".other.pt.~otherhost-1.x.tmp"
    unrelated.write_bytes(b"x")
    os.utime(unrelated, (old, old))
    assert clean_stale_temporaries(target) == [] and unrelated.exists()


def _model():
    torch.manual_seed(0)
    return build_model("small_cnn", num_classes=2, widths=(4, 8))


def test_checkpoint_with_nan_weights_is_refused_unless_allowed(tmp_path):
    model = _model()
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    with pytest.warns(UserWarning, match="NaN/infinite weights"):
        path = save_checkpoint(tmp_path / "m.pt", model, classes=["a", "b"])
    with pytest.raises(CheckpointError, match=r"m.pt: 1 weight tensor\(s\) hold NaN.*\(\d+\).*allow_nonfinite=True"):
        load_checkpoint(path)
    with pytest.warns(UserWarning, match="allow_nonfinite=True"):
        loaded = load_checkpoint(path, allow_nonfinite=True)
    assert torch.isnan(next(loaded.model.parameters())).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(save_checkpoint(tmp_path / "ok.pt", _model(), classes=["a", "b"]))  # finite: silent
