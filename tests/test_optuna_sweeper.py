"""The Optuna sweeper's parts without training: search spaces and retrying cut-off trials."""

import os
import socket
import subprocess

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from src.sweepers.optuna_search import OptunaSweeper
from src.sweepers.optuna_trial import INTERRUPTED_ATTR, OWNER_ATTR
from src.sweepers.search_space import parse_search_space


def test_hydra_sweep_syntax_becomes_optuna_distributions():
    space = parse_search_space(
        [
            "optimizer=choice(adam,sgd)",
            "optimizer.lr=tag(log, interval(1e-4, 1e-1))",
            "optimizer.momentum=interval(0.5, 0.99)",
            "data.batch_size=range(32, 129, 32)",
            "trainer.max_epochs=3",
        ]
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    overrides = space.overrides(trial)
    assert overrides[-1] == "trainer.max_epochs=3"  # fixed, passed to every trial
    assert [o.split("=")[0] for o in overrides[:-1]] == [
        "optimizer",
        "optimizer.lr",
        "optimizer.momentum",
        "data.batch_size",
    ]
    assert trial.distributions == {
        "optimizer": CategoricalDistribution(["adam", "sgd"]),
        "optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "optimizer.momentum": FloatDistribution(0.5, 0.99),
        "data.batch_size": IntDistribution(32, 128, step=32),  # range() leaves out its stop
    }


def cut_off_trial(study: optuna.Study, owner: str) -> optuna.Trial:
    trial = study.ask({"x": FloatDistribution(0, 1)})
    trial.set_user_attr(OWNER_ATTR, owner)
    return trial


@pytest.fixture
def sweeper() -> OptunaSweeper:
    return OptunaSweeper("s", "maximize", 4, optuna.samplers.RandomSampler(seed=0))


def test_a_trial_whose_search_died_fails_and_its_parameters_run_again(sweeper):
    study = optuna.create_study()
    finished = subprocess.Popen(["true"])
    finished.wait()  # a process id that no longer runs
    trial = cut_off_trial(study, f"{socket.gethostname()}:{finished.pid}")
    sweeper._retry_interrupted(study)
    cut_off, retry = study.get_trials()
    assert cut_off.state == TrialState.FAIL and cut_off.user_attrs[INTERRUPTED_ATTR]
    assert retry.state == TrialState.WAITING
    assert sweeper._trials_done(study) == 0  # the cut-off trial does not count as done
    assert study.ask({"x": FloatDistribution(0, 1)}).params == trial.params  # the next trial


def test_a_trial_cut_off_before_it_was_named_fails_too(sweeper):
    study = optuna.create_study()
    study.ask()  # the search died right after drawing it
    sweeper._retry_interrupted(study)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]


def test_trials_of_a_live_or_remote_search_are_left_running(sweeper):
    study = optuna.create_study()
    cut_off_trial(study, f"{socket.gethostname()}:{os.getpid()}")
    cut_off_trial(study, "another-machine:12345")
    sweeper._retry_interrupted(study)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING] * 2
