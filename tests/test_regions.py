"""RegionSet and its builders: validation, geometry that follows the image, builders' anatomy."""
from __future__ import annotations

import numpy as np
import pytest

from xaikit.errors import RegionError, XaikitError
from xaikit.regions import RegionSet, boxes, face_boxes, from_labelmap, from_masks, grid, lung_zones, polygons


def _lungs(n: int = 1, h: int = 48, w: int = 48) -> dict[str, np.ndarray]:
    """Two rectangular 'lungs' of different heights per image, shifted a little per image."""
    out = {k: np.zeros((n, h, w), bool) for k in ("left_lung", "right_lung", "heart", "body")}
    for i in range(n):
        out["right_lung"][i, 8 + i:38, 6:20] = True      # image left
        out["left_lung"][i, 10:32 + i, 28:42] = True     # image right
        out["heart"][i, 30:40, 20:30] = True
        out["body"][i, 2:46, 3:45] = True
    return out


def test_regionset_rejects_duplicates_shapes_and_non_boolean():
    m = np.zeros((2, 4, 4), bool)
    with pytest.raises(RegionError, match="Duplicate region names"):
        RegionSet(["a", "a"], m)
    with pytest.raises(RegionError, match="3 names"):
        RegionSet(["a", "b", "c"], m)
    with pytest.raises(RegionError, match="R x H x W"):
        RegionSet(["a"], np.zeros((4, 4), bool))
    with pytest.raises(RegionError, match="boolean"):
        RegionSet(["a", "b"], np.full((2, 4, 4), 0.5))
    with pytest.raises(RegionError, match="single string"):
        RegionSet("ab", m)
    assert issubclass(RegionError, XaikitError)


def test_regionset_access_select_join_and_expand():
    rs = grid(2, 2, (4, 6))
    assert rs.shared and rs.shape == (4, 6) and len(rs) == 4
    assert rs["row1_col0"].sum() == 2 * 3
    sel = rs.select(["row1_col1", "row0_col0"])
    assert sel.names == ("row1_col1", "row0_col0")
    np.testing.assert_array_equal(sel.masks[1], rs.masks[0])
    per_image = rs.expand(3)
    assert per_image.n_images == 3 and per_image.masks.shape == (3, 4, 4, 6)
    joined = per_image | RegionSet(["all"], np.ones((1, 4, 6), bool))
    assert joined.names[-1] == "all" and joined.masks.shape == (3, 5, 4, 6)
    with pytest.raises(RegionError, match="Duplicate"):
        rs | rs
    with pytest.raises(RegionError, match="No region named"):
        rs["nope"]
    np.testing.assert_allclose(rs.area_fractions(), [0.25] * 4)


def test_grid_reproduces_the_seed_thirds():
    rs = grid(1, 3, (224, 224))
    assert rs.names == ("col0", "col1", "col2")
    cols = [np.flatnonzero(m.any(axis=0)) for m in rs.masks]
    assert [(c[0], c[-1]) for c in cols] == [(0, 73), (74, 147), (148, 223)]
    assert rs.masks.sum(axis=0).min() == 1 and rs.masks.sum(axis=0).max() == 1  # a partition
    with pytest.raises(RegionError):
        grid(0, 3, (8, 8))


def test_from_masks_accepts_dicts_batches_and_sample_lists():
    lungs = _lungs(3)
    per_image = from_masks(lungs, names=["left_lung", "right_lung"])
    assert per_image.n_images == 3 and per_image.names == ("left_lung", "right_lung")
    batch = from_masks({"image": None, "masks": lungs})
    assert batch.names == tuple(lungs)
    samples = [{"masks": {k: v[i] for k, v in lungs.items()}} for i in range(3)]
    np.testing.assert_array_equal(from_masks(samples).masks, batch.masks)
    shared = from_masks({k: v[0] for k, v in lungs.items()})
    assert shared.shared
    with pytest.raises(RegionError, match="different shapes"):
        from_masks({"a": np.zeros((4, 4)), "b": np.zeros((5, 5))})
    with pytest.raises(RegionError, match="not found"):
        from_masks(lungs, names=["liver"])


def test_lung_zones_cut_each_lung_by_its_own_height():
    lungs = _lungs(2)
    rs = lung_zones(**lungs)
    assert rs.names == ("left_upper", "left_middle", "left_lower", "right_upper", "right_middle", "right_lower",
                        "heart", "mediastinum", "outside_body", "border", "corners")
    for i in range(2):
        for side in ("left", "right"):
            zones = [rs.masks[i, rs.names.index(f"{side}_{z}")] for z in ("upper", "middle", "lower")]
            lung = lungs[f"{side}_lung"][i]
            np.testing.assert_array_equal(np.logical_or.reduce(zones), lung)  # zones partition the lung
            assert sum(z.sum() for z in zones) == lung.sum()
            rows = [np.flatnonzero(z.any(axis=1)) for z in zones]
            height = np.flatnonzero(lung.any(axis=1)).size
            assert all(abs(r.size - height / 3) <= 1 for r in rows)    # thirds of this lung's height
            assert rows[0].max() < rows[1].min() and rows[1].max() < rows[2].min()
    med = rs["mediastinum"][0]
    assert med[20, 20:28].all() and not (med & (lungs["left_lung"][0] | lungs["heart"][0])).any()
    np.testing.assert_array_equal(rs["outside_body"][1], ~lungs["body"][1])
    border = rs["border"]
    assert border[0, 0, 20] and border[0, 3, 20] and not border[0, 4, 20]  # 0.08 * 48 = 4 pixels
    assert rs["corners"][0, 0, 0] and not rs["corners"][0, 24, 0]


def test_lung_zones_without_optional_masks():
    lungs = _lungs(1)
    rs = lung_zones(lungs["left_lung"][0], lungs["right_lung"][0])
    assert rs.shared and "heart" not in rs.names and "outside_body" not in rs.names


def test_from_labelmap_and_names_table(tmp_path):
    lab = np.zeros((6, 6), int)
    lab[:2], lab[4:] = 1, 3
    with pytest.warns(UserWarning, match=r"\[3\] have no name"):
        rs = from_labelmap(lab, {1: "top"})
    assert rs.names == ("top",) and rs["top"].sum() == 12
    csv = tmp_path / "names.csv"
    csv.write_text("value,name\n1,top\n3,bottom\n")
    rs = from_labelmap(np.stack([lab, lab]), csv)
    assert rs.names == ("top", "bottom") and rs.n_images == 2
    assert from_labelmap(lab, ["top", "nothing", "bottom"])["nothing"].sum() == 0
    with pytest.raises(RegionError, match="integer"):
        from_labelmap(lab + 0.5, ["a"])


def test_boxes_enclose_components_with_margin():
    m = np.zeros((20, 20), bool)
    m[5:9, 5:7] = True          # 4 x 2 component
    m[15, 15] = True            # speckle
    rs = boxes({"lesion": m}, margin=2, min_area=2)
    box = rs["lesion_box"]
    rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (3, 10, 3, 8)
    assert not box[15, 15]
    frac = boxes({"lesion": m}, margin=0.5, min_area=2)["lesion_box"]
    assert np.flatnonzero(frac.any(1)).tolist() == list(range(3, 11))  # 0.5 x 4 rows = 2 each side


def _face(shift=0):
    """A 32 x 32 face-parsing label map (CelebAMask-HQ values): eyes, brows, nose, lips, skin around."""
    lab = np.ones((32, 32), int)                              # skin
    lab[6:8, 6 + shift:12 + shift], lab[6:8, 20 + shift:26 + shift] = 2, 3              # brows
    lab[9:12, 7 + shift:11 + shift], lab[9:12, 21 + shift:25 + shift] = 4, 5            # eyes 3 x 4
    lab[13:19, 14 + shift:18 + shift] = 10                    # nose 6 x 4
    lab[22:24, 11 + shift:21 + shift], lab[24:25, 11 + shift:21 + shift] = 12, 13         # lips
    lab[23, 13 + shift:19 + shift] = 11                       # mouth opening
    return lab


def _extent(mask):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return rows[0], rows[-1], cols[0], cols[-1]


def test_face_boxes_follow_each_face_with_margins():
    lab = np.stack([_face(), _face(shift=3)])
    rs = face_boxes(lab, margin=0.5)
    assert rs.names == ("eyes", "nose", "mouth") and rs.masks.shape == (2, 3, 32, 32)
    eyes = rs.masks[0, 0]
    assert eyes[8:14, 5:13].all() and eyes[8:14, 19:27].all() and not eyes[11, 16]  # one box per eye, apart
    assert eyes.sum() == 2 * 7 * 8             # 3 x 4 eye, +1.5 rows (outward: floor/ceil -> 2) and +2 cols a side
    assert _extent(rs.masks[0, 1]) == (10, 21, 12, 19)             # nose rows 13-18 +3, cols 14-17 +2
    assert _extent(rs.masks[0, 2]) == (20, 26, 6, 25)              # lips and mouth as one 3 x 10 part + margins
    assert np.array_equal(rs.masks[1], np.roll(rs.masks[0], 3, axis=-1))  # each image's own face
    same = boxes({"eyes": np.isin(lab, [4, 5]), "nose": lab == 10, "mouth": np.isin(lab, [11, 12, 13])},
                 margin=0.5, min_area=4)
    assert np.array_equal(rs.masks, same.masks)
    brows = face_boxes(lab, regions={"eyes": ("l_eye", "r_eye", "l_brow", "r_brow")}, margin=0)
    assert _extent(brows.masks[0, 0]) == (6, 11, 6, 25)


def test_face_boxes_errors_and_missing_parts():
    with pytest.raises(RegionError, match=r"parts \['chin'\] are not in the label table"):
        face_boxes(_face(), regions={"chin": ("chin",)})
    with pytest.raises(RegionError, match="integer label map"):
        face_boxes(_face() + 0.5)
    no_nose = np.where(_face() == 10, 1, _face())
    with pytest.warns(UserWarning, match=r"region 'nose' has no parsed pixel in 1 of 1 images"):
        rs = face_boxes(no_nose)
    assert not rs["nose"].any()


def test_polygons():
    rs = polygons({"tri": [(0, 0), (0, 9), (9, 0)]}, (10, 10))
    assert rs["tri"][1, 1] and not rs["tri"][9, 9]
    with pytest.raises(RegionError, match="3"):
        polygons({"line": [(0, 0), (5, 5)]}, (10, 10))


def test_resize_and_apply_follow_the_image_geometry():
    rs = grid(1, 2, (4, 4))
    big = rs.resize((8, 8))
    np.testing.assert_array_equal(big.masks[0], np.kron(rs.masks[0], np.ones((2, 2), bool)))
    flipped = rs.expand(2).apply(lambda m: m[:, ::-1])
    np.testing.assert_array_equal(flipped.masks[1, 0], rs.masks[1])


class _FakePreprocess:
    """Preprocess-like: crops rows 1: and maps masks exactly like the image."""

    def to_dict(self) -> dict:
        return {"crop": 1}

    def __call__(self, image, masks=None):
        return image[None, 1:], {k: v[1:] for k, v in (masks or {}).items()}


def test_apply_uses_the_preprocess_mask_path():
    rs = RegionSet(["a"], np.eye(4, dtype=bool)[None])
    out = rs.apply(_FakePreprocess())
    np.testing.assert_array_equal(out.masks[0], np.eye(4, dtype=bool)[1:])
    bad = type("Bad", (), {"to_dict": lambda self: {}, "__call__": lambda self, im, masks: (im, None)})()
    with pytest.raises(RegionError, match="did not return a mask"):
        rs.apply(bad)


def test_apply_with_the_dataset_preprocess_matches_its_masks():
    preprocess = pytest.importorskip("xaikit.data.preprocess")
    pre = preprocess.Preprocess(size=16, mode="letterbox")
    lungs = {k: v[0, :, :30] for k, v in _lungs(1).items()}          # a 48 x 30 image
    rs = from_masks(lungs).apply(pre)
    _, expected = pre(np.zeros((48, 30), np.float32), lungs)
    assert rs.shape == (16, 16)
    for name in lungs:
        np.testing.assert_array_equal(rs[name], expected[name].numpy())
    assert not rs["body"][:, :3].any()                                  # letterbox padding is outside


def test_chest_partition_is_a_partition_with_the_heart_in_front():
    from xaikit.regions import chest_partition

    rng = np.random.default_rng(0)
    lungs, heart = rng.integers(0, 3, (2, 16, 16)), rng.random((2, 16, 16)) > 0.5
    left, right = lungs == 1, lungs == 2
    parts = chest_partition(left, right, heart)
    assert list(parts.names) == ["left_lung", "right_lung", "heart", "outside"]
    assert (parts.masks.sum(1) == 1).all()  # every pixel in exactly one region
    assert (parts.masks[:, 2] == heart).all() and not (parts.masks[:, 0] & heart).any()
    assert (parts.masks[:, 0] == (left & ~heart)).all() and (parts.masks[:, 3] == ~(left | right | heart)).all()
    with pytest.raises(RegionError, match="must have one shape"):
        chest_partition(left, right[:1], heart)
    with pytest.raises(RegionError, match=r"lung masks overlap in \d+ pixels"):
        chest_partition(left, left, heart)
