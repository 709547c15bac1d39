"""The deep models: a registry of the architectures of the story, a complexity counter, a trainer.

A library: no command line and no knowledge of data sets (those live in ``experiments``).
"""
