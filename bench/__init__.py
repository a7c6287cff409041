"""signalroom's benchmarks: each ``bench_*.py`` measures one thing side by side with its
reference or floor, writes ``bench/results/<name>.json`` and a line in ``bench/README.md``."""
