"""What a run records about itself, and reading runs back to compare them.

Metric directions, hyperparameters and status in TensorBoard, figures and the test report, run
folders read back, the comparison report. Like src/cli, a lower package: it never imports data,
models, callbacks, sweepers or the entry points.
"""
