"""The Dagster shell, one folder per feature; each folder's ``definitions.py`` names what it contributes."""
