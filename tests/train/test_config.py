"""Config schema, overrides, TOML round trip, and every shipped config (parses, names real parts, dry-runs)."""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import runpy
import shutil

import pytest
import torch

from lpl_train import engine
from lpl_train.config import (
    ConfigError,
    apply_override,
    config_dir,
    dumps_toml,
    find_config,
    list_configs,
    load_config,
    parse_value,
    schedule_warnings,
    validate_config,
)
from lpl_train.data import DATASETS
from lpl_train.losses import available_losses
from lpl_train.models import MODELS
from lpl_train.report import load_paper_results, paper_cell

MINIMAL = {
    "name": "x",
    "data": {"name": "fmnist"},
    "model": {"name": "fmnist_cnn"},
    "loss": {"name": "ce"},
    "schedule": {"epochs": 3},
}


def with_(section: str, **kv):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in MINIMAL.items()}
    raw.setdefault(section, {}).update(kv)
    return raw


def test_defaults_are_filled_and_input_is_not_mutated():
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in MINIMAL.items()}
    cfg = validate_config(raw)
    assert raw == MINIMAL
    assert cfg["optim"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False,
                            "weight_decay": 0.0, "l2_all": 0.0, "grad_clip": 0.0}  # fmt: skip
    assert cfg["train"]["seed"] == 0 and cfg["data"]["seed"] == 0 and cfg["data"]["root"] is None
    assert cfg["data"]["augment"] == "auto" and cfg["data"]["sampler"] == "none"
    assert "paper" not in cfg and cfg["description"] == ""


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        (with_("optim", lrr=0.1), r"unknown config key 'optim.lrr'; allowed in \[optim\]: .*lr"),
        ({**MINIMAL, "extra": 1}, r"unknown config key 'extra'; allowed top-level keys"),
        (
            with_("optim", lr="fast"),
            r"'optim.lr' has value 'fast' of type str; expected float or integer",
        ),
        (
            with_("schedule", epochs=2.5),
            r"'schedule.epochs' has value 2.5 of type float; expected integer",
        ),
        (with_("train", seed=True), r"'train.seed' has value True of type bool; expected integer"),
        (
            with_("optim", name="rmsprop"),
            r"'optim.name' has value 'rmsprop'; allowed: sgd, adam, adamw",
        ),
        (
            with_("schedule", epochs=0),
            r"'schedule.epochs' has value 0; expected a finite number > 0",
        ),
        (
            with_("optim", weight_decay=-1e-4),
            r"'optim.weight_decay' has value -0.0001; expected .* >= 0",
        ),
        (
            with_("optim", momentum=5),
            r"'optim.momentum' has value 5; expected a number in \[0, 1\)",
        ),
        (
            with_("optim", momentum=1.0),
            r"'optim.momentum' has value 1.0; expected a number in \[0, 1\)",
        ),
        (with_("schedule", milestones=[80, 40]), r"'schedule.milestones' .* strictly increasing"),
        (
            with_("schedule", milestones=[80], factors=[0.1, 0.01]),
            r"'schedule.factors' has 2 entries",
        ),
        (with_("schedule", warmup_epochs=2, warmup_iters=9), r"both set"),
        (with_("train", device="gpu"), r"'train.device' has value 'gpu'"),
        (with_("train", channels_last="yes"), r"'train.channels_last' has value 'yes'"),
        ({k: v for k, v in MINIMAL.items() if k != "loss"}, r"'loss.name' is required but missing"),
        (
            {**MINIMAL, "paper": {"table": "XI", "row": "a", "column": "b"}},
            r"'paper.table' has value 'XI'",
        ),
        ({**MINIMAL, "name": "a b"}, r"'name' has value 'a b'"),
    ],
)
def test_schema_errors_are_one_clear_message(raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate_config(raw)


def test_parse_value_and_override():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert (
        parse_value("[1, 2]") == [1, 2]
        and parse_value('"x y"') == "x y"
        and parse_value("abc") == "abc"
    )
    raw = apply_override(MINIMAL, "loss.params.epsilon=0.2")
    assert raw["loss"]["params"] == {"epsilon": 0.2} and "params" not in MINIMAL["loss"]
    raw = apply_override(raw, "schedule.milestones=[1, 2]")
    assert validate_config(raw)["schedule"]["milestones"] == [1, 2]
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_override(MINIMAL, "no_equals")
    with pytest.raises(ConfigError, match="is a value, not a table"):
        apply_override(MINIMAL, "name.x=1")
    # more than one value: a second line would have set a key of its own, silently dropped
    assert parse_value("1\nw = 2") == "1\nw = 2" and parse_value("1 # note") == 1
    with pytest.raises(ConfigError, match=r"'optim.lr' has value '0.5\\nnesterov = false'"):
        validate_config(apply_override(MINIMAL, "optim.lr=0.5\nnesterov = false"))


def test_a_study_file_given_as_a_run_config_is_named_as_one():
    """`lpl-train run study/fmnist` (or the study's path) failed with "unknown config key 'seeds'"."""
    for name in ("study/fmnist", config_dir() / "study" / "fmnist.toml"):
        with pytest.raises(
            ConfigError, match=r"is a study file .*not a run config: run it with `lpl-train study"
        ):
            load_config(name)


def test_load_config_overrides_epochs_and_names():
    cfg = load_config("fmnist-lt100-lpl", ["optim.lr=0.01", "train.seed=3"], epochs=2)
    assert cfg["name"] == "fmnist_lt100_lpl" and cfg["optim"]["lr"] == 0.01
    assert cfg["train"]["seed"] == 3 and cfg["schedule"]["epochs"] == 2
    recipe = load_config("fmnist_lt100_lpl")
    # the stored description says what actually ran; the recipe's own epochs leave it alone
    assert cfg["description"] == recipe["description"] + (
        f" [run for 2 epochs (--epochs) instead of the recipe's {recipe['schedule']['epochs']}]"
    )
    assert load_config("fmnist_lt100_lpl", epochs=recipe["schedule"]["epochs"]) == recipe
    with pytest.raises(ConfigError, match="unknown config key 'optim.lrr'"):
        load_config("fmnist_lt100_lpl", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="no config named 'fmnist_lt1000'.*similar"):
        find_config("fmnist_lt1000")
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        load_config("fmnist_lt100_lpl", epochs=0)


def test_load_config_from_path_and_bad_toml(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text(dumps_toml(validate_config(MINIMAL)))
    assert load_config(p)["name"] == "x"
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        find_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"is a folder, not a config file"):
        find_config(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xffname = 1\n")
    with pytest.raises(
        ConfigError, match=r"bin\.toml' is not UTF-8 text \(byte 0xff at position 0\)"
    ):
        load_config(binary)


def test_dumps_toml_round_trips_every_shipped_config():
    for name in list_configs():
        cfg = load_config(name)
        assert validate_config(tomllib.loads(dumps_toml(cfg))) == cfg, name


# ------------------------------------------------------------------------------- shipped configs
def test_shipped_configs_cover_the_paper_and_cpu_studies():
    names = list_configs()
    assert {"fmnist_lt100_ce", "fmnist_lt100_lpl"} <= set(names)
    cells = {(c["paper"]["table"], c["paper"]["row"], c["paper"]["column"])
             for c in map(load_config, names) if "paper" in c}  # fmt: skip
    assert len(cells) == sum(
        1 for n in names if n.startswith("t")
    )  # one config per cell, no duplicates
    # every cell of the reproducible rows has its config; rows whose method is not implemented do not
    not_implemented = {"CGAN", "ACGAN", "infoGAN", "Class-balanced fine-tuning", "Meta-weight net",
                       "ML-GCN", "OLTR", "LDAM"}  # fmt: skip
    tables = load_paper_results()["tables"]
    for t in ("I", "II", "III", "IV", "VIII"):
        for row in tables[t]["rows"]:
            for col in tables[t]["columns"]:
                if row in not_implemented and not (t in ("III", "IV") and row == "LDAM"):
                    continue
                assert (t, row, col) in cells, (t, row, col)
    assert ("IX", "LA+LPL", "CIFAR10-LT100") in cells and (
        "IX",
        "LA+LPL",
        "CIFAR100-LT100",
    ) in cells
    assert (
        sum(1 for c in cells if c[0] == "V") == 32 and sum(1 for c in cells if c[0] == "VI") == 16
    )
    assert {c for c in cells if c[0] == "X"} == {
        ("X", row, "MS-COCO") for row in tables["X"]["rows"]
    }


@pytest.mark.parametrize("name", list_configs())
def test_shipped_config_names_existing_parts_and_paper_cell(name):
    cfg = load_config(name)
    assert cfg["name"] == name
    assert cfg["loss"]["name"] in available_losses()
    assert cfg["model"]["name"] in MODELS
    assert cfg["data"]["name"] in DATASETS
    if "paper" in cfg:
        p = cfg["paper"]
        value = paper_cell(p["table"], p["row"], p["column"])
        assert ("map" in value) == (p["table"] in ("V", "X"))


@pytest.mark.parametrize("name", list_configs())
def test_shipped_schedule_events_happen_within_the_run(name):
    """A DRW switch, a milestone or a warm-up at or past the last epoch would silently never happen."""
    cfg = load_config(name)
    epochs = cfg["schedule"]["epochs"]
    drw = cfg["loss"]["params"].get("drw_epoch")
    if drw is not None:
        assert 0 < drw < epochs, (name, drw, epochs)
    assert all(m < epochs for m in cfg["schedule"]["milestones"]), name
    assert cfg["schedule"]["warmup_epochs"] < epochs, name


def test_fmnist_ldam_drw_reweights_in_its_last_two_epochs():
    from lpl_train.losses import build_loss

    for ratio in (10, 100):
        cfg = load_config(f"fmnist_lt{ratio}_ldam_drw")
        assert cfg["schedule"]["epochs"] == 5 and cfg["loss"]["params"]["drw_epoch"] == 3
        counts = [6000, 60] + [600] * 8
        lo = build_loss("ldam", num_classes=10, class_counts=counts, **cfg["loss"]["params"])
        reweighted = []
        for e in range(5):
            lo.set_epoch(e, 5)
            reweighted.append(not torch.equal(lo.weight, torch.ones(10)))
        assert reweighted == [False, False, False, True, True]


def test_recipes_match_the_notes():
    ldam = load_config("tiv_cifar10_lt100_ldam_drw")
    assert ldam["schedule"] == {**ldam["schedule"], "epochs": 200, "milestones": [160, 180],
                                "factors": [0.01, 0.0001], "warmup_epochs": 5}  # fmt: skip
    assert ldam["optim"]["weight_decay"] == 2e-4 and ldam["loss"]["params"]["drw_epoch"] == 160
    assert ldam["model"]["params"] == {"use_norm": True}
    la = load_config("tiii_cifar100_lt100_la")
    assert la["schedule"]["epochs"] == 1419 and la["schedule"]["milestones"] == [691, 1059, 1290]
    assert la["model"]["name"] == "resnet32_la" and la["optim"]["l2_all"] == 1e-4
    assert load_config("tiv_cifar10_lt100_la")["schedule"]["milestones"] == [604, 926, 1128]
    wrn = load_config("ti_cifar10_wrn28_10_isda")
    assert wrn["schedule"]["milestones"] == [60, 120, 160, 200] and wrn["schedule"]["gamma"] == 0.2
    # the authors' mean + varied-eps WRN script (train_lpl.py): 240 epochs, cosine per iteration, wd 5e-4,
    # dropout 0.3; the fixed-eps rows keep ISDA's step schedule (networks/train.py)
    for name in ("ti_cifar10_wrn28_10_lpl_varied", "tii_cifar100_wrn28_10_lpl_varied",
                 "tviii_cifar10_wrn16_8_lpl_varied", "tviii_cifar100_wrn16_8_lpl_varied"):  # fmt: skip
        v = load_config(name)
        assert v["schedule"]["epochs"] == 240 and v["schedule"]["kind"] == "cosine", name
        assert v["schedule"]["milestones"] == [] and v["schedule"]["warmup_epochs"] == 0, name
        assert v["optim"]["weight_decay"] == 5e-4 and v["model"]["params"]["dropout"] == 0.3, name
    assert load_config("tviii_cifar10_wrn16_8_lpl_fixed")["schedule"]["milestones"] == [
        60,
        120,
        160,
        200,
    ]
    assert load_config("tviii_cifar10_resnet32_lpl_varied")["schedule"]["kind"] == "step"
    db = load_config("tv_coco_mlt_rbce_ntr")
    assert db["schedule"]["epochs"] == 8 and db["schedule"]["warmup_iters"] == 500
    assert db["data"]["sampler"] == "class_aware" and db["loss"]["params"]["map_mu"] == 0.2
    assert db["loss"]["params"]["neg_scale"] == 2.0 and db["loss"]["params"]["num_samples"] == 1909
    assert load_config("tv_voc_mlt_erm")["data"]["sampler"] == "none"
    assert load_config("tix_cifar100_lt100_la_lpl")["loss"]["params"]["tau"] == 40
    # Table X: Table V's COCO recipe on full COCO-2014 at 448x448, ResNet-101
    for name in ("tx_coco_rbce_ntr", "tx_coco_rbce_lc", "tx_coco_rbce_lpl_varied"):
        x = load_config(name)
        assert x["data"]["name"] == "coco" and x["data"]["params"] == {"year": 2014, "size": 448}
        assert x["model"]["name"] == "resnet101" and x["data"]["sampler"] == "class_aware"
        assert {k: x[k] for k in ("optim", "schedule")} == {k: db[k] for k in ("optim", "schedule")}
        assert x["model"]["params"]["neck"] == "pfc" and x["model"]["params"]["frozen_stages"] == 1
    ntr = load_config("tx_coco_rbce_ntr")["loss"]["params"]
    assert ntr["num_samples"] == 82081 and ntr["neg_scale"] == 2.0 and ntr["map_mu"] == 0.2


def test_balanced_cifar_configs_use_isda_input_pipeline(tmp_path):
    """Tables I, II, VIII: ISDA's reflect-pad crop and mean/std reach the loaders the engine builds;
    the LDAM/LA long-tail rows keep zero padding and the archive's normalisation."""
    from tests.train.test_data_cifar import make_cifar10

    make_cifar10(tmp_path)
    mean = [125.3 / 255, 123.0 / 255, 113.9 / 255]
    std = [63.0 / 255, 62.1 / 255, 66.7 / 255]
    for name in ("ti_cifar10_resnet110_isda", "tviii_cifar10_resnet32_lpl_fixed"):
        cfg = load_config(name, [f"data.root='{tmp_path}'", "data.eval_batch_size=30"])
        loader = cfg["data"]["loader"]
        assert loader["pad_mode"] == "reflect"
        assert loader["mean"] == pytest.approx(mean, abs=1e-6)
        assert loader["std"] == pytest.approx(std, abs=1e-6)
        comps = engine.build_components(cfg, torch.device("cpu"))
        tl = comps.train_loader
        assert tl.pad_mode == "reflect" and tl.pad == 4
        assert tl.mean == pytest.approx(mean, abs=1e-6) and tl.std == pytest.approx(std, abs=1e-6)
        x, _ = next(iter(comps.test_loader))  # test images: ISDA's normalisation, no augmentation
        raw = comps.test_loader.images[:30].float() / 255
        ref = (raw - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        assert torch.allclose(x, ref, atol=1e-4)
    assert load_config("tiv_cifar10_lt100_ldam_drw")["data"]["loader"] == {}


@pytest.fixture(scope="module")
def cached_models():
    """Each distinct model spec is built once (WRN-28-10 and ResNet-50 are large)."""
    from lpl_train import models

    real, cache = models.build_model, {}

    def build(name, num_classes, **kw):
        key = (name, num_classes, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = real(name, num_classes, **kw)
        return cache[key]

    return build


@pytest.mark.parametrize("name", list_configs())
def test_every_shipped_config_dry_runs(name, cached_models, monkeypatch):
    import lpl_train.models

    monkeypatch.setattr(lpl_train.models, "build_model", cached_models)
    torch.manual_seed(0)
    info = engine.check_config(load_config(name))
    assert info["model_params"] > 0 and info["loss"]
    for err in (info["data_error"], info["weights_error"]):
        if err is not None:  # the message names what was tried
            assert "tried" in err or "not found" in err, err
    if name.startswith(("fmnist", "gaussian")) and info["data_error"] is None:
        assert info["train_size"] > 0


# ------------------------------------------------------------------------------- schema edges
def test_every_default_of_the_schema():
    cfg = validate_config(MINIMAL)
    assert cfg["data"] == {"name": "fmnist", "root": None, "seed": 0, "params": {}, "augment": "auto",
                           "loader": {}, "sampler": "none", "sampler_params": {}, "batch_size": 128,
                           "eval_batch_size": 512, "drop_last": False}  # fmt: skip
    assert cfg["schedule"] == {"epochs": 3, "kind": "step", "milestones": [], "gamma": 0.1,
                               "factors": [], "warmup_epochs": 0, "warmup_iters": 0,
                               "warmup_start_factor": 0.0}  # fmt: skip
    assert cfg["train"] == {"seed": 0, "device": "auto", "amp": "auto", "channels_last": "auto",
                            "compile": False, "compile_loss": False, "progress": True, "eval_every": 1,
                            "loss_variation": True, "loss_variation_every": 10, "capture": "auto",
                            "sync_batchnorm": False, "tensorboard": False}  # fmt: skip
    assert cfg["model"] == {"name": "fmnist_cnn", "params": {}}


def test_validated_configs_share_no_tables_with_the_input_or_the_schema():
    raw = with_("loss", params={"a": [1]})
    cfg = validate_config(raw)
    cfg["loss"]["params"]["a"].append(2)
    assert raw["loss"]["params"] == {"a": [1]}  # the input's nested values are copied
    cfg["data"]["params"]["x"] = 1
    cfg["schedule"]["milestones"].append(5)
    again = validate_config(MINIMAL)  # the defaults are copied too
    assert again["data"]["params"] == {} and again["schedule"]["milestones"] == []


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        ([MINIMAL], r"config must be a table \(dict\), got list"),
        ({**MINIMAL, "optim": 3}, r"config section \[optim\] must be a table, got 3"),
        (
            with_("optim", lr=float("inf")),
            r"'optim.lr' has value inf; expected a finite number > 0",
        ),
        (with_("optim", lr=float("nan")), r"'optim.lr' has value nan"),
        # beyond float32, torch's optimiser refuses them only at the first step
        (with_("optim", lr=1e39), r"'optim.lr' has value 1e\+39; expected at most 3.403e\+38"),
        (
            with_("optim", weight_decay=1e39),
            r"'optim.weight_decay' has value 1e\+39; expected at most",
        ),
        (with_("schedule", gamma=1e39), r"'schedule.gamma' has value 1e\+39; expected at most"),
        ({**MINIMAL, "name": "."}, r"'name' has value '.'"),
        ({**MINIMAL, "name": ".."}, r"'name' has value '..'"),
        ({**MINIMAL, "name": ""}, r"'name' has value ''"),
        (with_("data", eval_batch_size=0), r"'data.eval_batch_size' has value 0"),
        (with_("train", loss_variation_every=0), r"'train.loss_variation_every' has value 0"),
        (with_("optim", grad_clip=-1.0), r"'optim.grad_clip' has value -1.0; expected .* >= 0"),
        (with_("optim", l2_all=-1e-4), r"'optim.l2_all' has value -0.0001"),
        (with_("schedule", gamma=-0.1), r"'schedule.gamma' has value -0.1"),
        (with_("schedule", milestones=[40, 40]), r"'schedule.milestones' .* strictly increasing"),
        (with_("schedule", milestones=[True, 2]), r"'schedule.milestones'"),
        (with_("schedule", milestones=[0, 2]), r"'schedule.milestones'"),
        (
            with_("schedule", milestones=[1, 2], factors=[True, 0.1]),
            r"'schedule.factors' has value",
        ),
        (
            with_("schedule", milestones=[1, 2], factors=[-0.1, 0.1]),
            r"'schedule.factors' has value",
        ),
        (with_("schedule", milestones=[1, 2], factors=[0.1]), r"'schedule.factors' has 1 entries"),
        (
            with_("schedule", warmup_start_factor=1.5),
            r"'schedule.warmup_start_factor' has value 1.5",
        ),
        (with_("train", device="cudax"), r"'train.device' has value 'cudax'"),
        (with_("data", loader={"workers": None}), r"'data.loader.workers' has value None"),
        (with_("data", sampler_params={"a": None}), r"'data.sampler_params.a' has value None"),
        (with_("model", params={"widths": [1, None]}), r"'model.params.widths\[1\]' has value"),
        # "" is the header's slot in SCHEMA: a table of that name was dropped without a word
        ({**MINIMAL, "": {"optim": {"lr": 5}}}, r"unknown config key ''; allowed top-level keys"),
        (
            with_("schedule", milestones=[1, 2], factors=[float("inf"), 0.1]),
            r"'schedule.factors' has value \[inf, 0.1\]; expected finite numbers >= 0",
        ),
        (
            with_("schedule", milestones=[1, 2], factors=[1e39, 0.1]),
            r"'schedule.factors' has value \[1e\+39, 0.1\]; expected finite .*at most 3.403e\+38",
        ),
        # numpy's RandomState refused the first ("Seed must be between ..."), torch.manual_seed the second
        # ("Overflow when unpacking long long"), neither naming the key
        (
            with_("data", seed=2**32),
            r"'data.seed' has value 4294967296; expected an integer in \[0, ",
        ),
        (with_("train", seed=2**64), r"'train.seed' has value 18446744073709551616; expected an"),
        # torch.device refuses these ("Invalid device string"), and only on a machine with CUDA
        (with_("train", device="cuda:"), r"'train.device' has value 'cuda:'; allowed: .*cuda:N"),
        (with_("train", device="cuda:x"), r"'train.device' has value 'cuda:x'"),
        (with_("train", device="cuda:-1"), r"'train.device' has value 'cuda:-1'"),
        (with_("train", device="cuda:01"), r"'train.device' has value 'cuda:01'"),
    ],
)
def test_schema_edges_are_refused_by_name(raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate_config(raw)


def test_schema_accepts_the_edges_it_allows():
    for raw in (
        with_("schedule", warmup_start_factor=1.0),
        with_("train", device="cuda:1"),
        with_("train", device="cuda:10"),
        with_("data", seed=2**32 - 1),
        with_("train", seed=2**64 - 1),
        with_("schedule", milestones=[1, 2], factors=[0, 0.1]),
        {**MINIMAL, "name": "a.b"},
    ):
        validate_config(raw)


def test_schedule_warnings_at_their_boundaries():
    def warn(drw, **schedule):
        raw = with_("schedule", **schedule)
        raw["loss"] = {"name": "ldam", "params": {"drw_epoch": drw}}
        return schedule_warnings(validate_config(raw))

    assert warn(epochs=5, drw=4) == []
    assert [w.split(":")[0] for w in warn(epochs=5, drw=5)] == [
        "loss.params.drw_epoch=5 >= schedule.epochs=5"
    ]
    assert warn(epochs=5, drw=1, milestones=[4]) == []
    assert "schedule.milestones [5] are at or past" in warn(epochs=5, drw=1, milestones=[3, 5])[0]
    cosine = warn(epochs=5, drw=1, kind="cosine", milestones=[9])
    assert len(cosine) == 1 and "ignored by schedule.kind='cosine'" in cosine[0]  # not also "never"
    assert warn(epochs=5, drw=1, warmup_epochs=5) == []  # ends exactly with the warm-up
    assert "inside the warm-up" in warn(epochs=5, drw=1, warmup_epochs=6)[0]


def test_sgds_momentum_or_nesterov_set_for_adam_is_warned_as_unused():
    def warn(**optim):
        return schedule_warnings(validate_config(with_("optim", **optim)))

    assert warn(name="sgd", momentum=0.5, nesterov=True) == []  # SGD uses both
    assert warn(name="adam") == warn(name="adamw", momentum=0.9) == []  # the default: Adam's beta1
    assert warn(name="adam", momentum=0.5) == [
        'optim.momentum=0.5 is not used by optim.name="adam" (SGD only; the first-moment decay of '
        "Adam and AdamW stays 0.9)"
    ]
    (both,) = warn(name="adamw", momentum=0.0, nesterov=True)
    assert both.startswith(
        'optim.momentum=0.0 and optim.nesterov=true are not used by optim.name="adamw"'
    )


def test_find_config_by_path_without_suffix_and_hints_by_substring(tmp_path):
    p = tmp_path / "mine.cfg"
    p.write_text(dumps_toml(validate_config(MINIMAL)))
    assert find_config(p) == p and load_config(str(p))["name"] == "x"
    with pytest.raises(ConfigError, match=r"similar: .*wrn28_10") as info:
        find_config("wrn28")  # too short for a fuzzy match; a substring of shipped names
    assert all("wrn28" in n for n in str(info.value).split("similar: ")[1].split(", "))


def test_overrides_with_an_equals_sign_in_the_value_and_empty_keys():
    raw = apply_override(MINIMAL, "data.root='a=b'")
    assert raw["data"]["root"] == "a=b"
    # spaces around the "=" (as in a TOML file) belong to neither the key nor the value, a bare word included
    raw = apply_override(MINIMAL, "data.name = fmnist ")
    assert raw["data"]["name"] == "fmnist"
    assert apply_override(MINIMAL, "optim.lr = 0.5")["optim"]["lr"] == 0.5
    with pytest.raises(ConfigError, match="has an empty key"):
        apply_override(MINIMAL, "loss..epsilon=1")
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        load_config("fmnist_lt100_lpl", epochs=True)


def test_dumps_toml_quotes_strings_and_keys_that_need_it():
    cfg = validate_config(
        {**MINIMAL, "description": 'a "quoted" \\path\\ it\'s é',
         "loss": {"name": "ce", "params": {"odd key.x": "v"}}}
    )  # fmt: skip
    assert validate_config(tomllib.loads(dumps_toml(cfg))) == cfg


def test_dumps_toml_escapes_del_and_quotes_non_ascii_keys():
    """A TOML string may not hold DEL (U+007F) bare, which JSON's escaping leaves; a bare key is ASCII
    letters, digits, _ and - only, where str.isalnum() also takes é, ² and ١. Both were written as they
    are, and the config copy of a run could not be read back (its --resume failed)."""
    cfg = validate_config(
        {**MINIMAL, "description": "a\x7fb",
         "loss": {"name": "ce", "params": {"é": 1, "a²": 2, "١": 3, "k\x7f": 4, "a-b_1": 5}}}
    )  # fmt: skip
    text = dumps_toml(cfg)
    assert validate_config(tomllib.loads(text)) == cfg
    assert "a-b_1 = 5" in text  # still bare


def test_generate_py_writes_exactly_the_shipped_configs(tmp_path, capsys):
    """The shipped configs are generate.py's output, byte for byte: a recipe edited in one and not the
    other is caught. The script rewrites the folder it lies in, so it runs from a copy."""
    script = config_dir() / "generate.py"
    if not script.is_file():  # an installed package ships the TOML files only
        pytest.skip("generate.py is not beside the shipped configs")
    shutil.copy(script, tmp_path / "generate.py")
    runpy.run_path(str(tmp_path / "generate.py"), run_name="__main__")
    written = {p.name: p.read_bytes() for p in tmp_path.glob("*.toml")}
    shipped = {p.name: p.read_bytes() for p in config_dir().glob("*.toml")}
    assert sorted(written) == sorted(shipped)
    assert [n for n in sorted(shipped) if written[n] != shipped[n]] == []
    assert f"{len(shipped)} configs" in capsys.readouterr().out


def test_epochs_with_a_schedule_override_that_is_not_a_table_names_the_section():
    """--set schedule=3 with --epochs 2 was an AttributeError traceback ('int' object has no attribute
    'get'); it is the same one-line error as without --epochs."""
    for epochs in (None, 2):
        with pytest.raises(
            ConfigError, match=r"config section \[schedule\] must be a table, got 3"
        ):
            load_config("fmnist_lt100_ce", ["schedule=3"], epochs=epochs)
