"""The team deployment: the Dagster instance on a real Postgres server, liveness across hosts, deploy files."""
