"""The fault-injection harness (harness.py) and the callback it watches runs through."""
