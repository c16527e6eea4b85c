"""Shared fixtures live in ``integration_tests/fixtures/`` (one module per real part the tests start)."""

pytest_plugins = [
    "integration_tests.fixtures.dagster",
    "integration_tests.fixtures.postgres",
    "integration_tests.fixtures.sqs",
    "integration_tests.fixtures.standins",
    "integration_tests.fixtures.webhook",
]
