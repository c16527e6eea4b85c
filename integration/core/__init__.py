"""The pure core: messages, domain events, source records, the business rules, outcomes, intake, health assessment,
notice texts and the ports the outer rings implement. Standard library only (a lint rule in pyproject.toml keeps
Dagster, boto3, requests, SQLAlchemy and pandas out), so every rule is testable without any infrastructure."""
