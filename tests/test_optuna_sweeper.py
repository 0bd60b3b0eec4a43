"""The Optuna sweeper's parts without training: search spaces. (Cut-off trials, found by Optuna's
heartbeat: tests/test_sweeper_recovery.py.)"""

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

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
