"""The service layer: the flows that move records from the sources to Delius and keep the queue honest.

No Dagster here (defs/ wires them); ports and stores are passed in.
"""
