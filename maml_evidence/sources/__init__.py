"""Where spike payloads come from besides hand-written files: experiment trackers (MLflow).

``provenance`` is standard-library only (the store reads it for every report); ``mlflow`` imports the MLflow
client inside its functions, and only when the optional ``mlflow`` extra is installed.
"""
