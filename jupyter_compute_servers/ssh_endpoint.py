"""``SSHEndpoint``: how to reach a server over SSH, the value every SSH user passes around.

A leaf module of its own (no asyncssh, nothing of ours) so that the clouds, which describe
endpoints, and ``ssh.py``, which connects to them, can both import it without importing each
other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SSHEndpoint:
    """How to reach a running server over SSH. ``host_key`` is the pinned public host key in
    OpenSSH format; no other key is ever accepted for this server."""

    host: str
    port: int
    username: str
    host_key: str
    workspace: str
    #: The Python that runs the agent (and, by default, kernels) on the server.
    python: str = "python3"
    #: Where the agent keeps kernels' connection files and records on the server (private,
    #: never synced); empty means ``~/.jupyter-compute-servers``.
    runtime_dir: str = ""
    #: The user's own credentials for hosts they registered (a key file, or their ssh-agent),
    #: instead of the per-server key the extension generates.
    identity_file: str = ""
    use_agent: bool = False
    #: Team mode's shared hosts: log in with a short-lived certificate from the team's control
    #: plane (``certificates.py``), as the Unix account it names (``username`` is ignored).
    certificate: bool = False
    #: Honour ``~/.ssh/config`` for this host (HostName, ProxyJump...).
    use_ssh_config: bool = False
    #: Environment for everything started on the server for this compute server (kernels,
    #: terminals): its GPUs (CUDA_VISIBLE_DEVICES) and the token its processes are found by.
    environment: dict[str, str] = field(default_factory=dict, hash=False)
    #: An argument vector the RPC agent is started behind (Slurm's ``srun --jobid=<job>
    #: --overlap``: the agent, and so kernels and terminals, run inside a job's allocation
    #: while the connection is to the cluster's login node). File sync runs without it.
    launcher: tuple[str, ...] = ()
