"""The one list of what is not a hyperparameter.

The HPARAMS record in TensorBoard, the comparison report's columns, the folder names of sweep jobs
and the settings a continued Optuna study must share all leave out the same keys.
"""

# Config keys (and everything under them) that say where a run is recorded, how it is watched or
# started, not what it trains. Overrides of them do not name sweep jobs or tell runs apart.
NOT_HYPERPARAMETERS = (
    "paths",
    "extras",
    "logger",
    "callbacks",
    "hydra",
    "hparams_search",
    "task_name",
    "resume",
    "tags",
    "ckpt_path",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
)


def is_hyperparameter(key: str) -> bool:
    """Whether a config key or a command-line override (`optimizer.lr`, `+data.x=1`) sets
    something that shapes what a run trains."""
    key = key.partition("=")[0].lstrip("+~")
    return not any(key == k or key.startswith(f"{k}.") for k in NOT_HYPERPARAMETERS)
