"""The experiments' shared options: defined once, checked once, the same keywords for every experiment."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from tl_lab import experiments
from tl_lab.experiments.options import ExperimentOptions, Options

EXPERIMENTS = ("data_efficiency", "domain_shift", "forgetting", "freeze_sweep", "multitask", "negative_transfer",
               "parameter_efficiency")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_takes_the_shared_options_as_one_keyword_set(name):
    params = inspect.signature(getattr(experiments, name)).parameters
    assert str(params["options"].annotation) == "Unpack[ExperimentOptions]"
    assert not set(ExperimentOptions.__annotations__) & set(params)  # none repeated in the signature


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_a_misspelt_option_is_refused_before_anything_runs(name):
    with pytest.raises(TypeError, match=rf"{name}\(\) got an unexpected option 'epoch'; options: seed, image_size, "
                                        "epochs, fast, val_per_class, callback, run_dir"):
        getattr(experiments, name)(epoch=3)


def test_options_defaults_helpers_and_the_seeds_exception(tmp_path):
    o = Options.of("x", {"fast": True, "epochs": {"scratch": 7}, "run_dir": tmp_path})
    assert (o.seed, o.image_size, o.fast) == (0, None, True)
    assert o.epochs_for("scratch") == 7 and o.epochs_for("fine_tune") == 6  # the recipe's fast epochs
    assert o.files("a") == {"save_checkpoints": True, "run_dir": Path(tmp_path) / "a", "name": "a"}
    assert Options().files("a") == {"save_checkpoints": False, "run_dir": None, "name": "a"}
    assert Options.of("x", {}, image_size=64).image_size == 64 and Options.of("x", {"image_size": 32}, image_size=64).image_size == 32
    seen, records = [], []
    Options(callback=seen.append).emit(records, {"a": 1})
    assert seen == records == [{"a": 1}]
    with pytest.raises(TypeError, match=r"takes seeds=\(0, 1, \.\.\.\)"):
        experiments.data_efficiency(seed=1)
