"""Experiments as library code: each takes a typed config, runs library functions and
returns a dataclass of what it measured (``demo``: the end-to-end demo of ``echofm demo``)."""
