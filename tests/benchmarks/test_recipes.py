"""benchmarks/recipes.py end to end on tiny synthetic data (few points, two epochs), the budget
rule, the trial selection, the paired tests with the tie rule and the win rule."""

from __future__ import annotations

import json

import pytest

from benchmarks import recipes as rc
from benchmarks.ensemble_gap.protocol import synthetic_spec
from benchmarks.harness.tuning import Budget
from benchmarks.synthetic.generator import make_datasets
from benchmarks.synthetic.training import build_model
from examples.common.data import build_loaders
from examples.common.methods import build_method
from examples.common.task import TaskSpec
from examples.common.trainer import TrainConfig, seed_everything

TINY = ("--synthetic-points", "60", "40", "50", "--total-epochs", "3", "--pretrain-epochs", "1")
TINY_ARGS = (*TINY, "--no-progress", "--settings", "synthetic")


def test_the_registered_grids_are_equal_in_size_and_the_tests_corrected_over_six():
    assert len(rc.RECIPES) == 10
    assert {len(r.grid) for r in rc.RECIPES.values()} == {3}
    assert set(rc.MCR_RECIPES) <= set(rc.RECIPES) and len(rc.MCR_RECIPES) == 6
    assert pytest.approx(0.05 / 6) == rc.ALPHA
    assert rc.TOTAL_EPOCHS == 60 and rc.PRETRAIN_EPOCHS == 30
    assert {rc.RECIPES[k].method for k in rc.MCR_RECIPES} == {"mcr"}


def _method(recipe: str, seed: int = 0):
    spec, budget = synthetic_spec("synthetic", (60, 40, 50)), Budget()
    data = make_datasets(spec, seed)
    seed_everything(seed)
    r = rc.RECIPES[recipe]
    options = {**r.fixed, **r.grid[0]}
    options.pop("lr", None)
    task = TaskSpec("classification", num_classes=spec.num_classes)
    method = build_method(r.method, build_model(spec, budget), task, options)
    loaders = build_loaders(data, batch_size=budget.batch_size, seed=seed)
    config = TrainConfig(max_epochs=99, patience=50, lr=1e-3, progress=False, importance=False)
    return method, data, loaders, config


@pytest.mark.parametrize("recipe", ["mcr_uni_pre", "joint_uni_pre"])
def test_a_two_stage_recipe_spends_its_pretraining_inside_the_total(recipe):
    method, _, loaders, config = _method(recipe)
    assert method.stages == ("unimodal", "joint")
    ran = rc.fit_within_budget(method, loaders, config, total_epochs=5, pretrain_epochs=2)
    # patience 50 never stops early here: the caps decide
    assert ran == {"unimodal": 2, "joint": 3}
    assert method.stages == ("unimodal", "joint")


def test_a_one_stage_recipe_gets_the_whole_total():
    method, _, loaders, config = _method("ensemble")
    assert rc.fit_within_budget(method, loaders, config, total_epochs=4, pretrain_epochs=2) == {
        "unimodal": 4
    }


@pytest.mark.parametrize(("pre", "total"), [(0, 5), (5, 5), (6, 5)])
def test_a_budget_without_room_for_both_stages_is_a_clear_error(pre, total):
    method, _, loaders, config = _method("mcr")
    with pytest.raises(ValueError, match="expected 0 < pretrain_epochs < total_epochs"):
        rc.fit_within_budget(method, loaders, config, total_epochs=total, pretrain_epochs=pre)


def test_the_probes_score_each_encoder_on_the_points_its_modality_informs():
    method, data, _, _ = _method("joint")
    probes = rc.encoder_probes(method, data, num_classes=5)
    cats = data["test"].tensors["category"]
    assert probes["m1"]["items"] == int(((cats == 0) | (cats == 1)).sum())
    assert probes["m2"]["items"] == int(((cats == 0) | (cats == 2)).sum())
    assert all(0.0 <= p["accuracy"] <= 1.0 for p in probes.values())


def test_the_selected_trial_has_the_best_mean_validation_accuracy_first_on_ties():
    vals = {0: [0.5, 0.7], 1: [0.7, 0.5], 2: [0.6, 0.61]}  # trials 0 and 1 tie at 0.6
    tuning = {
        (k, i, s): {"val": vals[i][j], "test": 0.0}
        for k in rc.RECIPES
        for i in vals
        for j, s in enumerate((0, 1))
    }
    sel = rc.select_trials(tuning, [0, 1])
    assert sel["mcr"]["selected"] == 2
    tuning.update({(k, 2, s): {"val": 0.0, "test": 0.0} for k in rc.RECIPES for s in (0, 1)})
    assert rc.select_trials(tuning, [0, 1])["mcr"]["selected"] == 0


def _run(test: float, probe: float = 0.5) -> dict:
    return {
        "test": test,
        "val": test,
        "n_test": 2000,
        "epochs": {"joint": 10},
        "probe": {m: {"accuracy": probe, "items": 1000} for m in rc.PROBE_KINDS},
    }


def _selection() -> dict:
    return {
        k: {"trials": [{"options": {}, "val": 0, "test": 0}], "selected": 0} for k in rc.RECIPES
    }


def test_a_recipe_wins_a_setting_only_against_both_references():
    base = [0.70 + 0.001 * s for s in range(10)]
    runs = {k: [_run(a) for a in base] for k in rc.RECIPES}
    runs["mcr"] = [_run(a + 0.01 + 0.0005 * s) for s, a in enumerate(base)]  # above everyone
    runs["mcr_ceb"] = [_run(a + 0.01) for a in base]
    runs["multiloss"] = [_run(a + 0.02) for a in base]  # above mcr_ceb
    s = rc.summarise_setting(runs, _selection())
    assert s["tests"]["mcr"]["ensemble"]["verdict"] == "win"
    assert s["tests"]["mcr_ceb"]["ensemble"]["verdict"] == "win"
    assert s["tests"]["mcr_ceb"]["multiloss"]["verdict"] == "loss"
    assert s["wins_setting"]["mcr_ceb"] is False
    assert s["context"]["multiloss − mcr"]["mean_diff"] == pytest.approx(0.02 - 0.01 - 0.00225)
    assert rc.decide({"synthetic": s}, list(range(10)))["winning_recipes"] == []
    runs["multiloss"] = [_run(a) for a in base]
    s = rc.summarise_setting(runs, _selection())
    assert s["wins_setting"]["mcr"] is True
    assert rc.decide({"synthetic": s}, list(range(10)))["winning_recipes"] == ["mcr", "mcr_ceb"]
    assert rc.decide({"synthetic": s}, list(range(9)))["winning_recipes"] == []


def test_differences_below_one_test_item_are_ties():
    base = [0.70 + 0.001 * s for s in range(10)]
    runs = {k: [_run(a) for a in base] for k in rc.RECIPES}
    runs["mcr"] = [_run(a + 1e-7 * (-1) ** s) for s, a in enumerate(base)]  # float noise
    c = rc.summarise_setting(runs, _selection())["tests"]["mcr"]["ensemble"]
    assert (c["wins"], c["ties"], c["losses"]) == (0, 10, 0)
    assert c["verdict"] == "no detectable difference"


def test_probe_gaps_are_against_the_ensembles_encoder_of_the_same_seed():
    runs = {k: [_run(0.7, probe=0.6 + 0.01 * s) for s in range(10)] for k in rc.RECIPES}
    runs["joint"] = [_run(0.7, probe=0.55 + 0.01 * s) for s in range(10)]
    gaps = rc.summarise_setting(runs, _selection())["probe_gaps"]["joint"]
    for m in rc.PROBE_KINDS:
        assert gaps[m]["per_seed"] == pytest.approx([-0.05] * 10)
        assert gaps[m]["verdict"] == "loss"


def test_runs_report_and_resume_end_to_end(tmp_path, monkeypatch):
    out = tmp_path / "out"
    argv = ["--seeds", "0", "1", "2", "--tuning-seeds", "0", "1", "--out", str(out), *TINY_ARGS]
    result = rc.main(argv)
    s = result["settings"]["synthetic"]
    assert list(s["recipes"]) == list(rc.RECIPES)
    for k, r in s["recipes"].items():
        assert len(r["per_seed"]) == 3
        vals = [t["val"] for t in r["trials"]]
        assert vals[r["selected"]] == max(vals)
        assert sum(r["epochs"].values()) <= 3
        stages = {"unimodal", "joint"} if k in ("mcr_uni_pre", "joint_uni_pre") else None
        if stages:
            assert set(r["epochs"]) == stages and r["epochs"]["unimodal"] <= 1
    assert set(s["tests"]) == set(rc.MCR_RECIPES)
    assert set(s["probe_gaps"]["mcr"]) == {"m1", "m2"}
    assert result["decision"]["ten_seeds"] is False
    prov = result["provenance"]
    assert prov["arguments"] == argv
    assert {"commit", "dirty", "packages", "started", "ended"} <= set(prov)
    assert (out / "recipes-synthetic.png").stat().st_size > 0
    assert "### synthetic" in (out / "results.md").read_text()
    stored = sorted((out / "runs").iterdir())
    assert len(stored) == 10 * (3 * 2 + 1)

    def no_training(job):
        raise AssertionError(f"trained again: {job}")

    monkeypatch.setattr(rc, "train_one", no_training)
    again = rc.main(argv)
    assert again["settings"] == result["settings"]
    report = rc.main(["--report", str(out / "results.json"), "--out", str(tmp_path / "r")])
    assert report["settings"] == json.loads((out / "results.json").read_text())["settings"]
    assert (tmp_path / "r" / "recipes-synthetic.png").is_file()


def test_train_only_writes_no_results(tmp_path):
    out = tmp_path / "out"
    argv = ["--seeds", "0", "--tuning-seeds", "0", "--out", str(out), "--train-only", *TINY_ARGS]
    argv += ["--recipes", "ensemble", "multiloss"]
    assert rc.main(argv) == {}
    assert len(list((out / "runs").iterdir())) == 6 and not (out / "results.json").exists()


def test_bad_command_lines_are_clear_errors(tmp_path):
    with pytest.raises(SystemExit, match="expected --out"):
        rc.main(["--settings", "synthetic"])
    with pytest.raises(SystemExit, match="distinct seeds"):
        rc.main(["--seeds", "1", "1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="tuning seeds"):
        rc.main(["--seeds", "3", "4", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="references"):
        rc.main(["--recipes", "mcr", "ensemble", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"expected a results\.json"):
        rc.main(["--report", str(tmp_path / "missing.json")])


# --------------------------------------------------------------------------- real data sets
def test_each_benchmark_keeps_its_own_budget_with_half_of_it_for_pretraining():
    assert rc.epoch_caps("synthetic") == (rc.TOTAL_EPOCHS, rc.PRETRAIN_EPOCHS) == (60, 30)
    assert rc.epoch_caps("avmnist") == (rc.AVMNISTBudget().max_epochs, 15) == (30, 15)
    for setting in rc.SETTING_GROUPS["multiview"]:
        assert rc.setting_budget(setting) == rc.MULTIVIEW_BUDGET
        assert rc.epoch_caps(setting) == (60, 30)
    assert rc.setting_budget("avmnist").patience == 5
    assert rc.setting_budget("multiview-fou+kar").batch_size == 64


def test_the_settings_are_the_registered_pairs_and_multiview_names_all_three():
    pairs = rc.SETTING_GROUPS["multiview"]
    assert pairs == ("multiview-fou+kar", "multiview-fac+pix", "multiview-kar+zer")
    assert [rc.views_of(s) for s in pairs] == [("fou", "kar"), ("fac", "pix"), ("kar", "zer")]
    assert rc.expand_settings(["multiview-fac+pix", "avmnist", "multiview"]) == [
        "multiview-fac+pix",
        "avmnist",
        "multiview-fou+kar",
        "multiview-kar+zer",
    ]


def test_mcr_recipes_on_avmnist_get_the_benchmarks_projection_and_nothing_else_changes():
    for key, recipe in rc.RECIPES.items():
        for setting in ("avmnist", "multiview-fou+kar", "synthetic"):
            opts = rc.job_options(rc.Job(setting, key, 1, 0, store=""))
            mine = {**recipe.fixed, **recipe.grid[1]}
            if setting == "avmnist" and recipe.method == "mcr":
                assert opts == {**rc.MCR_PROJECTION, **mine}
            else:
                assert opts == mine


@pytest.fixture(scope="module")
def real_data(tmp_path_factory):
    from examples.avmnist.make_fixture import make_fixture
    from examples.multiview.make_fixture import write_fixture

    root = tmp_path_factory.mktemp("recipes-data")
    return make_fixture(root / "avmnist"), write_fixture(root / "mv", "wheel", per_class=12)


def test_real_settings_run_report_and_resume_end_to_end(tmp_path, monkeypatch, real_data):
    avmnist, wheel = real_data
    out = tmp_path / "out"
    argv = ["--settings", "avmnist", "multiview", "--avmnist-data", str(avmnist)]
    argv += ["--multiview-data", str(wheel), "--per-class", "4", "1", "1", "--out", str(out)]
    argv += ["--seeds", "0", "1", "--tuning-seeds", "0", "--total-epochs", "3"]
    argv += ["--pretrain-epochs", "1", "--no-progress"]
    argv += ["--recipes", "ensemble", "multiloss", "mcr", "mcr_uni_pre"]
    result = rc.main(argv)
    assert list(result["settings"]) == ["avmnist", *rc.SETTING_GROUPS["multiview"]]
    encoders = {"avmnist": ["image", "audio"], "multiview-fou+kar": ["fou", "kar"]}
    encoders.update({"multiview-fac+pix": ["fac", "pix"], "multiview-kar+zer": ["kar", "zer"]})
    for name, s in result["settings"].items():
        assert s["n_test"] == 10  # one test item per class
        assert s["encoders"] == encoders[name]
        assert set(s["recipes"]) == {"ensemble", "multiloss", "mcr", "mcr_uni_pre"}
        for k, r in s["recipes"].items():
            assert len(r["per_seed"]) == 2 and sum(r["epochs"].values()) <= 3
            if k == "mcr_uni_pre":
                assert r["epochs"]["unimodal"] <= 1
        assert set(s["probe_gaps"]["mcr"]) == set(encoders[name])
        assert s["probe_gaps"]["ensemble"][encoders[name][0]]["mean_diff"] == 0
        assert s["budget"]["total_epochs"] == 3 and len(s["data"]["digest"]) == 64
        assert (out / f"recipes-{name}.png").stat().st_size > 0
    assert result["settings"]["avmnist"]["budget"]["patience"] == 5
    assert result["settings"]["avmnist"]["data"]["root"] == str(avmnist)
    assert "| recipe | image | audio |" in (out / "results.md").read_text()
    assert len(list((out / "runs").iterdir())) == 4 * 4 * (3 + 1)

    def no_training(job):
        raise AssertionError(f"trained again: {job}")

    monkeypatch.setattr(rc, "train_one", no_training)
    assert rc.main(argv)["settings"] == result["settings"]


def test_the_probes_of_real_data_score_every_encoder_on_every_test_point(real_data):
    avmnist, wheel = real_data
    for setting, root in (("avmnist", avmnist), ("multiview-kar+zer", wheel)):
        job = rc.Job(setting, "joint", 0, 0, store="", data_root=str(root), per_class=(3, 1, 2))
        built = rc.build_setting(job, rc.setting_budget(setting))
        method = build_method("joint", built.model, TaskSpec("classification", 10), {})
        probes = rc.encoder_probes(
            method, built.data, built.num_classes, built.probe_kinds, built.probe_dtype
        )
        assert list(probes) == list(built.model.encoders)
        assert {p["items"] for p in probes.values()} == {20}
        assert all(0.0 <= p["accuracy"] <= 1.0 for p in probes.values())


def test_a_real_setting_without_its_data_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="expected --avmnist-data PATH for the setting avmnist"):
        rc.main(["--settings", "avmnist", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"expected --multiview-data PATH .* multiview-fou"):
        rc.main(["--settings", "multiview", "--out", str(tmp_path)])
