"""Receivers that turn client payloads into store batches (remote write, OTLP, ...)."""
