"""What makes the command line pleasant: one-line errors, resolvers, extras, instantiation.

Like src/tracking, a lower package: it never imports data, models, callbacks, sweepers or the
entry points.
"""
