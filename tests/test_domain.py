"""Model card and out-of-domain warning: measured on real radiographs (fires) and held-out phantoms (silent)."""
from __future__ import annotations

import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from xaikit.checkpoint import load_checkpoint, save_checkpoint
from xaikit.domain import OutOfDomainWarning, check_domain, domain_distance, domain_features, fit_domain, watch_domain
from xaikit.models import build_model
from xaikit.samples import CLEAN_DATA, MODELS, sample_dir

REAL_CXR = Path(__file__).resolve().parents[2] / "shared" / "real_cxr"
CLEAN = sample_dir() / "models" / MODELS["clean"]
needs_model = pytest.mark.skipif(not CLEAN.is_file(), reason="sample models not built (python -m xaikit samples)")


@pytest.fixture(scope="module")
def clean():
    return load_checkpoint(CLEAN)


def _split(ckpt, split):
    from xaikit.data import ManifestDataset

    data = ManifestDataset(sample_dir() / "manifest.csv", split=split, preprocess=ckpt.preprocess)
    return data, torch.stack([data[i]["image"] for i in range(len(data))])


@pytest.fixture(scope="module")
def train_x(clean):
    return _split(clean, "train")[1]


@needs_model
def test_shipped_checkpoint_carries_a_model_card(clean):
    card = clean.card
    assert card["data"] == CLEAN_DATA and "not a diagnostic model" in card["intended_use"]
    assert set(card["image_statistics"]) == {"mean_mean", "mean_std", "mean_dark_fraction", "mean_bright_fraction",
                                             "mean_laplacian", "mean_asymmetry"}
    assert (clean.model.xaikit_domain["threshold"] > 0
            and clean.model.xaikit_domain["n_images"] == card["n_train_images"])


@needs_model
def test_model_card_is_rebuilt_byte_for_byte(clean, train_x, tmp_path):
    """`python -m xaikit samples` writes the card with add_model_card: on the same weights it gives the same file."""
    from xaikit.samples import add_model_card

    copy = tmp_path / CLEAN.name
    shutil.copy(CLEAN, copy)
    assert add_model_card(copy, [{"image": t} for t in train_x], data=CLEAN_DATA) == clean.card
    assert copy.read_bytes() == CLEAN.read_bytes()


@needs_model
def test_held_out_phantoms_are_in_domain(clean):
    test, x = _split(clean, "test")
    from xaikit.saliency import explain
    from xaikit.train import assess

    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        dist = check_domain(clean.model, x)
        explain(clean.model, x[:4], "gradient")
        assess(clean.model, test, n_boot=0)
    assert dist.max() < 1.0  # measured: 0.44-0.81 for the 52 test phantoms


@pytest.mark.skipif(not REAL_CXR.is_dir(), reason=f"{REAL_CXR} (real radiographs) not present")
@needs_model
def test_real_radiographs_are_out_of_domain(clean):
    from xaikit.io import read_image
    from xaikit.saliency import explain

    paths = sorted(REAL_CXR.glob("NORMAL/*.jpeg"))  # the 20 normal radiographs the model calls pneumonia
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the aspect-ratio warning of the model's resize Preprocess
        x = clean.prepare([read_image(p) for p in paths])
    dist = domain_distance(clean.model.xaikit_domain, domain_features(clean.model, x))
    # measured: 1.1-2.5 for all 40 real radiographs (xaikit/domain.py); held-out phantoms stay below 0.81
    assert len(paths) == 20 and (dist > 1.0).all(), f"only {(dist > 1).sum()} of 20 flagged; distances {dist.round(2)}"
    with pytest.warns(OutOfDomainWarning, match=r"explain: 4 of 4 input\(s\) are far .*trained on synthetic phantom"):
        explain(clean.model, x[:4], "gradient")


def test_fit_domain_flags_shifted_inputs_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=2).eval()
    rng = np.random.default_rng(0)
    train = torch.from_numpy(rng.uniform(0.2, 0.8, (40, 1, 32, 32)).astype(np.float32))
    shifted = torch.from_numpy(rng.uniform(0.0, 0.1, (8, 1, 32, 32)).astype(np.float32))  # dark, flat images
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    domain = fit_domain(model, train, n_components=4)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model._forward_hooks and not model.classifier._forward_hooks  # hooks removed
    model.eval()
    # identity: the farthest training image sits at exactly 1 / margin of the threshold
    np.testing.assert_allclose(domain_distance(domain, domain_features(model, train)).max(), 1 / 1.2)
    model.xaikit_domain = domain
    with pytest.warns(OutOfDomainWarning, match="8 of 8"):
        check_domain(model, shifted, where="test")
    with pytest.warns(OutOfDomainWarning, match="assess: 8 of 8"):
        with watch_domain(model, where="assess"):
            model(shifted[:4]), model(shifted[4:])
    assert not model._forward_pre_hooks and not model.classifier._forward_hooks
    del model.xaikit_domain
    assert check_domain(model, shifted) is None  # a model without a card is not checked


def test_domain_survives_a_weights_only_checkpoint(tmp_path):
    model = build_model("small_cnn", num_classes=2).eval()
    x = torch.rand(12, 1, 32, 32)
    domain = fit_domain(model, x, n_components=4, description="noise")
    path = save_checkpoint(tmp_path / "m.pt", model, classes=["a", "b"], preprocess={"size": 32},
                           summary={"domain": domain})
    loaded = load_checkpoint(path)
    assert loaded.model.xaikit_domain == domain and loaded.card == {}
    np.testing.assert_allclose(check_domain(loaded.model, x), domain_distance(domain, domain_features(model, x)))


# ------------------------------------------------------------------------ scoring: the user's inputs, checked once
_SCORED = {"deletion": {"patch": 16, "steps": 4}, "insertion": {"patch": 16, "steps": 4},
           "max_sensitivity": {"n_samples": 2}, "local_lipschitz": {"n_samples": 2},
           "sensitivity_max": {"n_samples": 2}, "faithfulness_correlation": {"n_runs": 5, "subset_size": 64},
           "cascading_randomization": {"similarities": ["spearman_abs"]}}


def _domain_warnings(record):
    return [w for w in record if issubclass(w.category, OutOfDomainWarning)]


@needs_model
def test_scoring_held_out_phantoms_raises_no_domain_warning(clean):
    """The metrics' noisy copies are far from the training data (measured: 1.1-1.6 times the threshold for
    uniform noise of 0.05): the check must see the user's images only, which are in domain."""
    from xaikit.domain import domain_check_off
    from xaikit.evaluation import curves, randomized_maps, score, score_many
    from xaikit.saliency import explain

    _, x = _split(clean, "test")
    x = x[:3]
    noisy = x + (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 0.1 - 0.05)
    assert domain_distance(clean.model.xaikit_domain, domain_features(clean.model, noisy)).max() > 1.0
    with domain_check_off():
        exp = explain(clean.model, x, "gradient")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        score_many(clean.model, x, {"gradient": exp}, _SCORED, progress=False)
        score("max_sensitivity", clean.model, x, exp, n_samples=2)
        curves(clean.model, x, {"gradient": exp}, steps=4, patch=16)
        randomized_maps(clean.model, x[:1], exp.select([0]))
    assert _domain_warnings(record) == [], [str(w.message) for w in _domain_warnings(record)]


def test_scoring_out_of_domain_inputs_warns_exactly_once():
    """Out-of-domain inputs warn once per scoring call, from the caller's line, naming the user's image count."""
    from xaikit.evaluation import curves, score, score_many
    from xaikit.saliency import explain

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=2).eval()
    rng = np.random.default_rng(0)
    model.xaikit_domain = fit_domain(model, torch.from_numpy(rng.uniform(0.2, 0.8, (40, 1, 32, 32)).astype(
        np.float32)), n_components=4)
    far = torch.from_numpy(rng.uniform(0.0, 0.1, (3, 1, 32, 32)).astype(np.float32))
    with pytest.warns(OutOfDomainWarning, match=r"explain: 3 of 3"):
        exp = explain(model, far, "gradient")
    for call, where in [
        (lambda: score_many(model, far, {"gradient": exp}, _SCORED, progress=False), "score_many"),
        (lambda: score("max_sensitivity", model, far, exp, n_samples=3), "score"),
        (lambda: score("cascading_randomization", model, far, exp), "score"),
        (lambda: curves(model, far, {"gradient": exp}, steps=4), "curves")]:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            call()
        found = _domain_warnings(record)
        assert len(found) == 1, (where, [str(w.message) for w in found])
        assert str(found[0].message).startswith(f"{where}: 3 of 3 input(s)")  # the user's 3, not 3 x n_samples
        assert found[0].filename == __file__  # points at the user's call
    # the check is switched back on after each call
    with pytest.warns(OutOfDomainWarning, match="explain: 3 of 3"):
        explain(model, far, "gradient")
SHIPPED = {name: sample_dir() / "models" / name for name in (*MODELS.values(), "phantom_cnn3d.pt")}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_checkpoint_carries_a_card_and_a_domain(name):
    if not SHIPPED[name].is_file():
        pytest.skip(f"{name} not built (python -m xaikit samples)")
    ckpt = load_checkpoint(SHIPPED[name])
    card, domain = ckpt.card, ckpt.model.xaikit_domain
    assert card["data"] == domain["description"] and "not a diagnostic model" in card["intended_use"]
    assert card["n_train_images"] == domain["n_images"] and domain["threshold"] > 0 and domain["residual_threshold"] > 0
    assert card["classes"] == ckpt.classes and card["test_metrics"] == ckpt.summary["test_metrics"]


@pytest.mark.skipif(not SHIPPED["phantom_unet.pt"].is_file(), reason="sample models not built")
def test_segmentation_cards_rebuild_byte_for_byte_and_flag_inverted_radiographs(tmp_path):
    """The UNet (no nn.Linear: its deepest encoder's channel means) and the box model: `python -m xaikit samples`
    writes their cards with card_seg_model; on the same weights it gives the same bytes."""
    from xaikit.saliency import explain, targets
    from xaikit.samples import card_seg_model, segmentation_arrays

    train, test = segmentation_arrays(split="train"), segmentation_arrays(split="test")
    for key in ("unet", "heart_box"):
        copy = tmp_path / MODELS[key]
        shutil.copy(SHIPPED[MODELS[key]], copy)
        card_seg_model(copy, train["images"])
        assert copy.read_bytes() == SHIPPED[MODELS[key]].read_bytes(), key
        model = load_checkpoint(copy).model
        dist = check_domain(model, test["images"])
        assert dist.max() < 1.0, key  # measured: 0.96 (UNet) and 0.94 (box) for the 52 test phantoms
    unet = load_checkpoint(SHIPPED[MODELS["unet"]]).model
    inverted = 1 - test["images"][:3]
    with pytest.warns(OutOfDomainWarning, match=r"explain: 3 of 3 input\(s\) are far .*at 64 px"):
        explain(unet, inverted, "gradient", targets.segmentation(2))  # a target wraps the UNet: still checked


@pytest.mark.skipif(not SHIPPED["phantom_cnn3d.pt"].is_file(), reason="sample models not built")
def test_the_domain_check_works_on_volumes(tmp_path):
    from xaikit.saliency import explain
    from xaikit.samples import VOLUME_DATA, VOLUME_USE, add_model_card, volume_datasets

    split = volume_datasets()
    copy = tmp_path / "phantom_cnn3d.pt"  # the card as `python -m xaikit samples` writes it: the same bytes
    shutil.copy(SHIPPED["phantom_cnn3d.pt"], copy)
    add_model_card(copy, split["train"], data=VOLUME_DATA, intended_use=VOLUME_USE)
    assert copy.read_bytes() == SHIPPED["phantom_cnn3d.pt"].read_bytes()
    ckpt = load_checkpoint(SHIPPED["phantom_cnn3d.pt"])
    test = split["test"]
    x = torch.stack([test[i]["image"] for i in range(len(test))])
    assert x.ndim == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        dist = check_domain(ckpt.model, x)
    assert dist.max() < 1.0  # measured: 0.84 for the 47 held-out phantom CTs
    with pytest.warns(OutOfDomainWarning, match=r"explain: 2 of 2 input\(s\) are far .*phantom CT volumes"):
        explain(ckpt.model, 1 - x[:2], "gradient")  # inverted intensities: nothing like a CT


def test_captions_and_row_labels_carry_the_domain_flag():
    from xaikit.saliency import explain
    from xaikit.viz.saliency import method_grid

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=2).eval()
    rng = np.random.default_rng(1)
    train = torch.from_numpy(rng.uniform(0.2, 0.8, (40, 1, 32, 32)).astype(np.float32))
    model.xaikit_domain = fit_domain(model, train, n_components=4, description="noise")
    x = torch.cat([train[:1], torch.zeros(1, 1, 32, 32)])  # a training image, a black one
    dist = domain_distance(model.xaikit_domain, domain_features(model, x))
    from xaikit.checkpoint import Checkpoint

    ckpt = Checkpoint(model, "small_cnn", {"num_classes": 2}, ["a", "b"], {"size": 32})
    with pytest.warns(OutOfDomainWarning, match="1 of 2"):
        exp = explain(model, x, "gradient")
    probs = exp.probs
    captions = ckpt.captions(x, probs)
    k = int(probs[1].argmax())
    assert captions[0] == f"predicted: {'ab'[int(probs[0].argmax())]} (p = {float(probs[0].max()):.3f}) | " \
                          f"in domain ({dist[0]:.2f})"
    assert captions[1] == (f"predicted: {'ab'[k]} (p = {float(probs[1, k]):.3f}) | "
                           f"OUT OF DOMAIN ({dist[1]:.1f}x threshold)")
    assert ckpt.captions(x) == captions  # the model predicts when no probabilities are given
    fig = method_grid(x[:, 0], {"gradient": exp}, class_names=["a", "b"], domain_distances=dist)
    assert "OUT OF DOMAIN" in fig.layout.yaxis2.title.text and "in domain" in fig.layout.yaxis.title.text


def test_explain_many_warns_once_for_all_methods_and_batches(tmp_path):
    from xaikit.saliency import explain_many

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=2).eval()
    rng = np.random.default_rng(2)
    train = torch.from_numpy(rng.uniform(0.2, 0.8, (40, 1, 32, 32)).astype(np.float32))
    model.xaikit_domain = fit_domain(model, train, n_components=4, description="noise")
    x = torch.cat([train[:3], torch.zeros(3, 1, 32, 32)])
    want = domain_distance(model.xaikit_domain, domain_features(model, x))
    for _ in range(2):  # the second call is served from the cache: it warns all the same
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            explain_many(model, x, ["gradient", "input_x_gradient"], batch_size=2, cache_dir=tmp_path, progress=False)
        far = [w for w in caught if issubclass(w.category, OutOfDomainWarning)]
        assert len(far) == 1 and f"explain_many: {(want > 1).sum()} of 6 input(s)" in str(far[0].message)
        assert far[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings(record=True) as caught, ThreadPoolExecutor(2) as pool:  # an executor warns too
        warnings.simplefilter("always")
        explain_many(model, x, ["gradient", "input_x_gradient"], batch_size=2, executor=pool, progress=False)
    far = [w for w in caught if issubclass(w.category, OutOfDomainWarning)]
    assert len(far) == 1 and f"explain_many: {(want > 1).sum()} of 6 input(s)" in str(far[0].message)
    # the check runs once per call: one feature forward per batch, not one more per (method, batch) inside explain()
    import xaikit.domain as domain

    calls = []
    features = domain.domain_features
    try:
        domain.domain_features = lambda m, xb, **kw: calls.append(len(xb)) or features(m, xb, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfDomainWarning)
            explain_many(model, x, ["gradient", "input_x_gradient"], batch_size=2, progress=False)
    finally:
        domain.domain_features = features
    assert calls == [2, 2, 2]
