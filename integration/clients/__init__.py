"""Clients of the outside world: HMPPS Auth, the Case Notes and Alerts APIs, and the SQS queue."""
