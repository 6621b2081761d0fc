"""The synthetic generator: proportions, where the label information is, determinism."""

import pytest
import torch

from benchmarks.synthetic.generator import SyntheticSpec, make_datasets, sample_categories


@pytest.mark.parametrize(
    ("u1", "s", "u2"), [(0.7, 0.1, 0.2), (0.1, 0.7, 0.2), (0.0, 1.0, 0.0), (0.5, 0.0, 0.5)]
)
def test_category_proportions_are_exact(u1, s, u2):
    spec = SyntheticSpec(u1=u1, s=s, u2=u2, n_train=1000, n_val=200, n_test=300)
    data = make_datasets(spec, seed=0)
    for split, n in (("train", 1000), ("val", 200), ("test", 300)):
        counts = torch.bincount(data[split].tensors["category"], minlength=3).tolist()
        assert counts == [n - round(n * u1) - round(n * u2), round(n * u1), round(n * u2)]


def test_categories_are_shuffled():
    cats = sample_categories(
        1000, SyntheticSpec(u1=0.3, s=0.5, u2=0.2), torch.Generator().manual_seed(0)
    )
    assert not torch.equal(cats, cats.sort().values)


def _class_means(x, y, k):
    return torch.stack([x[y == c].mean(0) for c in range(k)])


def test_label_information_only_where_specified():
    spec = SyntheticSpec(u1=0.4, s=0.3, u2=0.3, n_train=6000, n_val=10, n_test=10)
    t = make_datasets(spec, seed=1)["train"].tensors
    y, cats = t["label"], t["category"]
    for modality, informative, silent in (("m1", (0, 1), 2), ("m2", (0, 2), 1)):
        x = t[modality]
        quiet = cats == silent
        loud = (cats == informative[0]) | (cats == informative[1])
        spread_quiet = _class_means(x[quiet], y[quiet], 5).std(0).mean()
        spread_loud = _class_means(x[loud], y[loud], 5).std(0).mean()
        # where a modality is noise its class means coincide up to sampling error
        assert spread_quiet < 0.3 * spread_loud, modality


def test_shapes_and_determinism():
    spec = SyntheticSpec(n_train=50, n_val=20, n_test=30)
    a = make_datasets(spec, seed=3)
    b = make_datasets(spec, seed=3)
    c = make_datasets(spec, seed=4)
    assert a["train"].tensors["m1"].shape == (50, spec.input_dims[0])
    assert a["test"].tensors["m2"].shape == (30, spec.input_dims[1])
    assert torch.equal(a["train"].tensors["m1"], b["train"].tensors["m1"])
    assert not torch.equal(a["train"].tensors["m1"], c["train"].tensors["m1"])
    assert set(a["train"].tensors["label"].tolist()) <= set(range(5))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"u1": 0.5, "s": 0.5, "u2": 0.5}, "u1 \\+ s \\+ u2 == 1"),
        ({"u1": -0.1, "s": 0.9, "u2": 0.2}, "u1 in \\[0, 1\\]"),
        ({"hard_modality": 3}, "hard_modality"),
        ({"n_train": 0}, "n_train"),
        ({"nuisance_dims": (-1, 0)}, "nuisance_dims and nuisance_std >= 0"),
        ({"nuisance_std": (0.0, -2.0)}, "nuisance_dims and nuisance_std >= 0"),
    ],
)
def test_bad_spec_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticSpec(**kwargs)


def test_nuisance_adds_label_free_variance_to_its_modality():
    base = SyntheticSpec(u1=0.4, s=0.4, u2=0.2, n_train=4000, n_val=10, n_test=10)
    loud = SyntheticSpec(
        u1=0.4,
        s=0.4,
        u2=0.2,
        n_train=4000,
        n_val=10,
        n_test=10,
        nuisance_dims=(16, 0),
        nuisance_std=(5.0, 0.0),
    )
    a = make_datasets(base, seed=2)["train"].tensors
    b = make_datasets(loud, seed=2)["train"].tensors
    assert torch.equal(a["label"], b["label"]) and torch.equal(a["category"], b["category"])
    extra = b["m1"] - a["m1"]  # exactly the nuisance: the signal draws come first
    # per input dimension the nuisance has variance 25 * (sum over 16 factors of w^2) ~ 25
    assert 15.0 < float(extra.var(0).mean()) < 35.0
    # label-free: the class means of the nuisance coincide up to sampling error
    y = b["label"]
    assert float(_class_means(extra, y, 5).std(0).mean()) < 0.1 * float(extra.std(0).mean())


def test_default_spec_has_no_nuisance():
    spec = SyntheticSpec()
    assert spec.nuisance_dims == (0, 0) and spec.nuisance_std == (0.0, 0.0)
