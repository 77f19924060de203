"""senflow's benchmark suite: ``python -m bench`` (or ``bench/run``).

One module per measurement; each makes its own database and RabbitMQ names
and removes them afterwards. Results are printed as a table and written to
``bench/results/latest.json``. Method and latest results: docs/benchmarks.md.
"""
