"""Hydra sweepers: every combination (grid) and an Optuna search with pruning and resume, plus
what links a job to its trial (the pruning callback).

Hydra only loads sweepers from the `hydra_plugins` package; `hydra_plugins/template_sweepers`
names these classes there and imports them only when a sweep uses them.
"""
