"""PromQL: parser adapter, evaluator, functions, and the promqltest conformance runner.

Public entry points: `Engine` (engine.py), the `Querier` protocol and `MemoryStorage`
(storage.py), result types and errors (value.py).
"""
