"""region_scores: every column against a slow per-pixel reference, policies, metadata and bad input."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from xaikit.errors import ArgumentError, ExplanationError, RegionError
from xaikit.regions import REGION_COLUMNS, RegionSet, from_masks, grid, region_scores


def _reference(maps, masks, sign, normalize, topk):
    """Loop over images and regions, straight from the definitions."""
    rows = []
    for i, m in enumerate(maps):
        s = {"positive": np.maximum(m, 0), "absolute": np.abs(m), "signed": m}[sign]
        mass = np.abs(s).sum()
        scale = {"none": 1.0, "sum": mass, "max_abs": np.abs(s).max()}[normalize]
        k = math.ceil(topk * s.size)
        thr = np.sort(s.ravel())[::-1][k - 1]
        top = (s >= thr) & ((s > 0) if sign != "signed" else True)
        peak = np.unravel_index(np.argmax(s), s.shape)
        region_masks = masks if masks.ndim == 3 else masks[i]
        for r in region_masks:
            area = r.sum()
            rows.append({
                "sum": s[r].sum() / scale, "mean": s[r].mean() / scale, "max": s[r].max() / scale,
                "area_frac": area / s.size, "mass_frac": s[r].sum() / mass,
                "density_ratio": (s[r].sum() / mass) / (area / s.size),
                "topk_overlap": (top & r).sum() / top.sum(), "pointing": float(r[peak]) if s.max() > 0 else np.nan,
            })
    return pd.DataFrame(rows)


@pytest.fixture
def maps(rng):
    return rng.standard_normal((5, 12, 10))


@pytest.mark.parametrize("sign", ["positive", "absolute", "signed"])
@pytest.mark.parametrize("normalize", ["none", "sum", "max_abs"])
@pytest.mark.parametrize("shared", [True, False])
def test_matches_reference(maps, rng, sign, normalize, shared):
    masks = rng.random((3, 12, 10)) < 0.4 if shared else rng.random((5, 3, 12, 10)) < 0.4
    df = region_scores(maps, RegionSet(["a", "b", "c"], masks), sign=sign, normalize=normalize, topk=0.2)
    ref = _reference(maps, masks, sign, normalize, 0.2)
    for col in ref.columns:
        np.testing.assert_allclose(df[col].to_numpy(float), ref[col].to_numpy(float), rtol=1e-10, err_msg=col)
    assert (df["sign"] == sign).all() and (df["normalization"] == normalize).all()


def test_columns_metadata_and_identities(maps):
    rs = grid(1, 2, (12, 10)) | RegionSet(["all"], np.ones((1, 12, 10), bool))
    expl = SimpleNamespace(maps=maps.astype(np.float32), method="saliency", image_ids=list("abcde"),
                           labels=np.array([0, 1, 0, 1, 1]), preds=np.array([0, 1, 1, 1, 0]))
    df = region_scores(expl, rs, patient_ids=["p1", "p1", "p2", "p3", "p3"])
    assert list(df.columns) == REGION_COLUMNS[:1] + ["patient_id"] + REGION_COLUMNS[1:]
    assert len(df) == 5 * 3 and (df["method"] == "saliency").all()
    assert df.loc[df.image_id == "c", "correct"].eq(False).all() and df.loc[df.image_id == "b", "correct"].all()
    halves = df[df.region != "all"].groupby("image_id")["mass_frac"].sum()
    np.testing.assert_allclose(halves, 1.0, rtol=1e-5)                     # a partition holds all the mass
    whole = df[df.region == "all"]
    np.testing.assert_allclose(whole[["mass_frac", "density_ratio", "topk_overlap", "pointing"]], 1.0, rtol=1e-5)
    plain = region_scores(maps, rs)
    assert plain["label"].isna().all() and plain["correct"].isna().all() and "patient_id" not in plain


def test_fractions_do_not_depend_on_scale_but_sums_do(maps):
    rs = grid(2, 2, (12, 10))
    a = region_scores(maps, rs, normalize="sum")
    b = region_scores(maps * 7.0, rs, normalize="sum")
    c = region_scores(maps * 7.0, rs)
    for col in ("mass_frac", "density_ratio", "topk_overlap", "pointing", "sum", "mean", "max"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-10)
    np.testing.assert_allclose(c["sum"], 7.0 * region_scores(maps, rs)["sum"], rtol=1e-10)


def test_empty_regions_and_flat_maps_give_nan_with_warnings(maps):
    masks = np.zeros((2, 12, 10), bool)
    masks[0, :6] = True
    with pytest.warns(UserWarning, match="'empty' in 5 images"):
        df = region_scores(maps, RegionSet(["top", "empty"], masks))
    assert df.loc[df.region == "empty", ["mean", "mass_frac", "pointing"]].isna().all().all()
    assert (df.loc[df.region == "empty", "area_frac"] == 0).all()
    flat = -np.abs(maps)  # nothing positive
    with pytest.warns(UserWarning, match="no relevance"):
        df = region_scores(flat, grid(1, 2, (12, 10)))
    assert df["mass_frac"].isna().all() and df["pointing"].isna().all()


def test_bad_input_is_refused(maps):
    with pytest.raises(RegionError, match="regions.resize"):
        region_scores(maps, grid(1, 3, (8, 8)))
    with pytest.raises(RegionError, match="masks for 2 images"):
        region_scores(maps, grid(1, 3, (12, 10)).expand(2))
    bad = maps.copy()
    bad[3, 0, 0] = np.nan
    with pytest.raises(ExplanationError, match=r"\['3'\]"):
        region_scores(bad, grid(1, 3, (12, 10)))
    with pytest.raises(ArgumentError, match="sign"):
        region_scores(maps, grid(1, 3, (12, 10)), sign="negative")
    with pytest.raises(ArgumentError, match="labels has 2"):
        region_scores(maps, grid(1, 3, (12, 10)), labels=[0, 1])
    with pytest.raises(ArgumentError, match="topk"):
        region_scores(maps, grid(1, 3, (12, 10)), topk=0)


def test_dict_of_masks_and_chunking_agree(maps, rng, monkeypatch):
    masks = {"a": rng.random((5, 12, 10)) < 0.5, "b": rng.random((5, 12, 10)) < 0.5}
    whole = region_scores(maps, masks)
    import xaikit.regions.scores as scores

    monkeypatch.setattr(scores, "_CHUNK_BYTES", 1)  # one image per chunk
    chunked = region_scores(maps, from_masks(masks))
    pd.testing.assert_frame_equal(whole, chunked)


def test_reads_a_real_explanation(maps):
    torch = pytest.importorskip("torch")
    explanation = pytest.importorskip("xaikit.saliency.explanation")
    expl = explanation.Explanation(
        maps=torch.tensor(maps, dtype=torch.float32), method="gradient", params={}, target_policy="pred",
        targets=torch.zeros(5, dtype=torch.long), preds=torch.tensor([0, 1, 1, 0, 1]), probs=torch.ones(5, 2) / 2,
        image_ids=list("vwxyz"), labels=torch.tensor([0, 1, 0, 0, 1]))
    df = region_scores(expl, grid(1, 2, (12, 10)))
    assert df["image_id"].unique().tolist() == list("vwxyz") and (df["method"] == "gradient").all()
    assert df.groupby("image_id")["correct"].first().tolist() == [True, True, False, True, True]
    np.testing.assert_allclose(df["sum"], region_scores(maps.astype(np.float32), grid(1, 2, (12, 10)))["sum"])


def test_several_explanations_give_one_table(maps):
    """A dict (as explain_many returns) labels the methods with its keys; a list keeps each method's name;
    both equal the per-explanation tables stacked in order."""
    rs = grid(1, 2, (12, 10))
    a = SimpleNamespace(maps=maps, method="gradient", image_ids=list("abcde"), labels=None, preds=None)
    b = SimpleNamespace(maps=-maps, method="gradcam", image_ids=list("abcde"), labels=None, preds=None)
    pids = ["p1", "p1", "p2", "p3", "p3"]
    one_by_one = pd.concat([region_scores(e, rs, sign="absolute", patient_ids=pids, method=k)
                            for k, e in {"g": a, "c": b}.items()], ignore_index=True)
    pd.testing.assert_frame_equal(region_scores({"g": a, "c": b}, rs, sign="absolute", patient_ids=pids), one_by_one)
    listed = region_scores([a, b], rs)
    assert listed["method"].tolist() == ["gradient"] * 10 + ["gradcam"] * 10
    pd.testing.assert_frame_equal(listed, pd.concat([region_scores(a, rs), region_scores(b, rs)], ignore_index=True))


def test_several_explanations_refuse_one_method_label_and_empty_dicts(maps):
    a = SimpleNamespace(maps=maps, method="gradient", image_ids=None, labels=None, preds=None)
    with pytest.raises(ArgumentError, match=r"method='x' names one method but 2 explanations"):
        region_scores({"a": a, "b": a}, grid(1, 2, (12, 10)), method="x")
    with pytest.raises(ArgumentError, match="explanations is an empty dict"):
        region_scores({}, grid(1, 2, (12, 10)))
    # a list of plain arrays is still one N x H x W stack of maps
    assert len(region_scores(list(maps), grid(1, 2, (12, 10)))) == 5 * 2


def test_normalize_values_are_checked(maps):
    rs = grid(1, 2, (12, 10))
    with pytest.raises(ArgumentError, match=r"normalize='l2' is not one of"):
        region_scores(maps, rs, normalize="l2")


def test_issue23_constant_maps_point_nowhere_and_no_maps_is_an_argument_error():
    import warnings as _w

    from xaikit.errors import ArgumentError
    from xaikit.regions import grid

    with _w.catch_warnings():
        _w.simplefilter("ignore")
        table = region_scores(np.ones((2, 4, 6)), grid(1, 3, (4, 6)))
    assert table["pointing"].isna().all()   # argmax of a constant map is pixel 0: no region is credited
    with pytest.raises(ArgumentError, match=r"region_scores: no maps to score .*N = 0"):
        region_scores(np.zeros((0, 4, 6)), grid(1, 3, (4, 6)))
