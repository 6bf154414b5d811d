"""The team's control plane: a small web service that JupyterHub runs and authenticates for
(``c.JupyterHub.services``), holding what no user's Jupyter server may hold.

Today it is the team's **SSH certificate authority** (``ca.py``): the CA's private key lives
only here, in a 0600 file of the Hub's account; a user's Jupyter server, authenticated by its
Hub token, gets a short-lived OpenSSH user certificate for an ephemeral key of its own, with
the user's Unix account on the shared hosts as the only principal. Hosts trust the CA
(``TrustedUserCAKeys``), so no shared host key is ever in a user's server. ``app.py`` is the
tornado application; ``python -m jupyter_compute_servers.control_plane`` runs it.
"""
