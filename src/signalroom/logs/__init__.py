"""Centralized logs: pipeline, store, LogQL and the services that run them."""
