"""Subcommands of the `echofm` CLI, one module each (discovered by `echofm.cli`)."""
