"""What makes the command line pleasant: one-line errors, resolvers, extras, instantiation.

A lower package: it imports only src/core (tests/test_structure.py).
"""
