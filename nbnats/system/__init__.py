"""Runtime-level operations on a NATS system: server reports, round trips, benchmarks and message traces.

Reports (``report.py``) come from the system account: the bundled server's own
system user, or the connection's when it is a system-account user (``sources.py``).
``bench.py`` measures rates and latencies on connections of its own; ``trace.py``
follows one message through the servers (nats-server 2.11+).

>>> nbnats.server_ls()                      # doctest: +SKIP
>>> nbnats.bench("pub", "bench.x", msgs=10_000).figure   # doctest: +SKIP
>>> nbnats.trace("orders.new")              # doctest: +SKIP
"""
