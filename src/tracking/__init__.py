"""What a run records about itself, and reading runs back to compare them.

Hyperparameters and status, figures and the test report, checkpoints saved whole, run folders read
back, the comparison report. A lower package: it imports only src/core (tests/test_structure.py).
"""
