"""The pure core: standard library only, no Dagster, AWS, HTTP, SQLAlchemy or pandas."""
