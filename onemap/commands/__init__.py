"""CLI subcommand groups."""
