"""Command-line tools for operators (they talk to the Dagster webserver, as the UI does)."""
