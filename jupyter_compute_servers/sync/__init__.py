"""File sync between the Jupyter root and a compute server's workspace.

- ``settings``: per-server settings (excludes, server-only directories, size limit, schedule,
  sync before kernels) and the request body, validated;
- ``plan``: the three-way planner (pure);
- ``scan``: both sides' scans as the planner takes them, the server's checked;
- ``transfer``: the channel to the sync process on the server;
- ``engine``: one sync, from scans to the record;
- ``records``: what is kept in the store (settings, the record, the runs);
- ``service``: syncs for the API, the CLI, kernel launches and the schedule.

The file-level work on both sides is the sync agent, ``agent/sync_agent.py``.
"""
