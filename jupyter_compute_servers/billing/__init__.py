"""Costs of compute servers: prices before creating, metering by the second, spend limits, a
monthly budget, a daily stop time and idle shutdown.

- ``prices``: price tables (shipped in ``price_tables/``, replaceable by configuration), and the
  hourly rates of a configuration in each state;
- ``catalog``: an optional refresh of GCP prices from the Cloud Billing Catalog API;
- ``estimate``: ``POST estimate``, the cost of a configuration before it exists;
- ``metering``: spend from the durable state history, each interval at its state's rate;
- ``limits``: spend limits, the monthly budget and daily stop times, decided from the meter;
- ``idle``: activity of kernels, terminals and GPUs, and when a server counts as idle;
- ``service``: ``ComputeServerCosts``, the configuration (``c.ComputeServerCosts.*``), the
  background watcher that stops servers, and what the manager and the API ask of costs.

Nothing here imports the manager at import time, so clouds may import ``prices``.
"""
