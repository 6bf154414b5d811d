"""The team's control plane: a small web service that JupyterHub runs and authenticates for
(``c.JupyterHub.services``), holding what no user's Jupyter server may hold.

It is the team's **SSH certificate authority** (``ca.py``): the CA's private key lives
only here, in a 0600 file of the Hub's account; a user's Jupyter server, authenticated by its
Hub token, gets a short-lived OpenSSH user certificate for an ephemeral key of its own, with
the user's Unix account on the shared hosts as the only principal. Hosts trust the CA
(``TrustedUserCAKeys``), so no shared host key is ever in a user's server.

It is also the **Compute Engine proxy** (``gce.py``): the project's service account key lives
only here, and users' servers call Compute Engine through it with their Hub tokens; each call
is forwarded only when it is on the allow-list and, for a VM or disk, when the resource's owner
label is the caller's. It issues **Kubernetes tokens** (``kubernetes.py``): the cluster admin's
kubeconfig lives only here, and each user's server gets a short-lived ServiceAccount token
bound in a namespace of that user's own.

An admin may **revoke** a user (``revocations.py``): nothing more is issued or forwarded to
them, their Kubernetes binding is deleted, their database sessions end, and their
certificates go into the KRL hosts fetch for sshd's ``RevokedKeys``. ``app.py`` is the
tornado application; ``python -m jupyter_compute_servers.control_plane`` runs it.
"""
