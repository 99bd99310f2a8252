"""The team deployment: the Postgres instance's dagster.yaml (``instance.py``) and, as data files, a Dockerfile for
the code location, values for Dagster's Helm chart and a compose file for one team server (see README)."""
