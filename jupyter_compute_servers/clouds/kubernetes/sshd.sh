# jupyter-compute-servers: the command of a compute server's pod (run by /bin/sh as the
# image's own user, e.g. jovyan).
#
# It runs the image's OpenSSH sshd, unprivileged, on 127.0.0.1:$JCS_SSH_PORT only: nothing in
# the cluster's network can reach it; Jupyter reaches it through the API server's port-forward
# (which connects to the pod's own loopback). The host key and the one authorized client key
# come from the server's Secret, mounted at $JCS_SSH_DIR; the host key is the one Jupyter
# generated and pinned, so nothing is trusted on first use. Sessions get the container's PATH
# (the image's Python, conda...), its HOME (the disk) and its GPU variables.
set -eu
dir="${TMPDIR:-/tmp}/jupyter-compute-servers-ssh"
rm -rf "$dir"
mkdir -m 700 -p "$dir"
# sshd refuses a host key others can read; the mounted Secret's files may be group-readable.
cp "$JCS_SSH_DIR/ssh_host_ed25519_key" "$dir/ssh_host_ed25519_key"
cp "$JCS_SSH_DIR/authorized_keys" "$dir/authorized_keys"
chmod 600 "$dir/ssh_host_ed25519_key" "$dir/authorized_keys"
# On PATH: images' default PATH has /usr/sbin (Docker's and the Jupyter Docker Stacks' do).
sshd="$(command -v sshd || true)"
# An image without it but with conda (the Jupyter Docker Stacks, as their unprivileged user):
# OpenSSH from conda-forge, installed once into the disk, so later starts find it there.
openssh="$HOME/.jupyter-compute-servers/openssh"
[ -n "$sshd" ] || [ ! -x "$openssh/bin/sshd" ] || sshd="$openssh/bin/sshd"
conda="$(command -v mamba || command -v conda || true)"
if [ -z "$sshd" ] && [ -n "$conda" ]; then
    echo "jupyter-compute-servers: installing OpenSSH from conda-forge into $openssh" >&2
    "$conda" create -y -q -p "$openssh" -c conda-forge openssh >&2 && sshd="$openssh/bin/sshd"
fi
if [ -z "$sshd" ]; then
    echo "jupyter-compute-servers: this image has no OpenSSH server (sshd): install openssh-server in it" >&2
    exit 127
fi
sftp=""
for candidate in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server "$openssh/libexec/sftp-server"; do
    [ -x "$candidate" ] && sftp="$candidate" && break
done
environment="PATH=$PATH HOME=$HOME"
[ -n "${NVIDIA_VISIBLE_DEVICES:-}" ] && environment="$environment NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"
{
    echo "Port $JCS_SSH_PORT"
    echo "ListenAddress 127.0.0.1"
    echo "HostKey $dir/ssh_host_ed25519_key"
    echo "AuthorizedKeysFile $dir/authorized_keys"
    echo "PidFile $dir/sshd.pid"
    echo "UsePAM no"
    echo "StrictModes no"
    echo "PasswordAuthentication no"
    echo "KbdInteractiveAuthentication no"
    echo "PubkeyAuthentication yes"
    echo "AllowTcpForwarding local"
    echo "PermitTunnel no"
    echo "X11Forwarding no"
    echo "SetEnv $environment"
    if [ -n "$sftp" ]; then echo "Subsystem sftp $sftp"; else echo "Subsystem sftp internal-sftp"; fi
} >"$dir/sshd_config"
exec "$sshd" -D -e -f "$dir/sshd_config"
