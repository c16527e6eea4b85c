"""The Delius database side: table definitions of the contract, engine setup, schema/seed helpers, and the merge."""
