"""Spike evidence straight from MLflow: a real tracking server, runs with learning curves, collected payloads."""
