"""What every package shares: one-line errors, files written whole, metric directions, what is
not a hyperparameter, and the names of what a run writes.

The lowest package: it imports nothing else from src, and every other package may import it.
"""
