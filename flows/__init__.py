"""Prefect integration: the only package that imports prefect."""
