"""The live workspace: a tree of the Jupyter root mounted on a compute server with sshfs, whose
SFTP requests come back over the server's one SSH connection and are served here, confined to
the tree (``sftp.py``), by the mount service (``service.py``)."""
