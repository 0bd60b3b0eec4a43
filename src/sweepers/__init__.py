"""Hydra sweepers: every combination (grid) and an Optuna search with pruning and resume.

Hydra only loads sweepers from the `hydra_plugins` package; `hydra_plugins/template_sweepers`
re-exports these classes so configs can name them.
"""
