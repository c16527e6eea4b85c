"""Prison case notes and alerts to NDelius contacts, orchestrated by Dagster.

The pure core (``events``, ``rules``, ``delius``) has no Dagster, AWS or HTTP inside; ``clients`` talk to the
outside world; the Dagster shell (``resources``, ``sensors``, ``jobs``, ``assets``, ``definitions``) wires them.
"""
