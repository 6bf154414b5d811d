"""A team deployment on one machine, for trying team mode: ``jupyter compute-servers
team-try`` (``command.py``) starts a local PostgreSQL (``postgres.py``), and JupyterHub with the
control plane as a service, from the Hub configuration that ``hub_config.py`` writes. The
tests' Hub (tests/hub.py) is written by the same ``hub_config.py``.
"""
