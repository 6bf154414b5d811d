#!/bin/bash
# jupyter-compute-servers: the startup script of a Compute Engine VM that is a compute server.
#
# Google's guest environment runs it as root at every boot (metadata key "startup-script").
# It makes the VM ready for kernels and reports through guest attributes, which the Jupyter
# side reads with instances.getGuestAttributes (namespace "jupyter-compute-servers"):
#
#   status  "<boot id> <what it is doing now>" (shown as the server's progress)
#   error   "<boot id> <why the VM cannot be a compute server>" (start fails with it)
#   python  the Python that has ipykernel (the agent and kernels run on it)
#   ready   "<boot id>", written last: the VM is ready for kernels
#
# Values carry this boot's id (/proc/sys/kernel/random/boot_id), so that what an earlier boot
# wrote is never mistaken for this one's answer.
#
# The SSH host keys are published by the guest environment itself (namespace "hostkeys"),
# because the instance has the metadata enable-guest-attributes=TRUE. The user logging in is
# created by the guest environment from the "ssh-keys" metadata.
#
# Assumptions (see docs/design.md): a Debian or Ubuntu image (apt) or one that already has a
# Python with ipykernel (Deep Learning VM images: /opt/conda). GPU drivers come with the image:
# Deep Learning VM images install the NVIDIA driver at first boot when the metadata
# install-nvidia-driver=True is set (the gcp cloud sets it on GPU servers); this script only
# waits for nvidia-smi to work.
#
# JCS_METADATA_URL, JCS_BOOT_ID, JCS_PYTHON_CANDIDATES and JCS_APT_RETRY_DELAY exist for
# tests; on a VM they are unset.
set -u

METADATA="${JCS_METADATA_URL:-http://metadata.google.internal/computeMetadata/v1/instance}"
NAMESPACE=jupyter-compute-servers
BOOT_ID="${JCS_BOOT_ID:-$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || date +%s%N)}"

attr() {  # attr KEY VALUE: publish a guest attribute
    curl -sf -X PUT -H "Metadata-Flavor: Google" --data-binary "$2" \
        "$METADATA/guest-attributes/$NAMESPACE/$1" >/dev/null ||
        echo "jupyter-compute-servers: could not write guest attribute $1" >&2
}
metadata() {  # metadata KEY: an instance metadata value (empty when unset)
    curl -sf -H "Metadata-Flavor: Google" "$METADATA/attributes/$1" || true
}
say() {
    echo "jupyter-compute-servers: $1" >&2
    attr status "$BOOT_ID $1"
}
fail() {
    echo "jupyter-compute-servers: $1" >&2
    attr error "$BOOT_ID $1"
    exit 1
}

say "setting up the VM for kernels"

USER_NAME="$(metadata jupyter-compute-servers-user)"
ENGINE="$(metadata jupyter-compute-servers-container-engine)"
CANDIDATES="${JCS_PYTHON_CANDIDATES:-/opt/conda/bin/python3 /opt/conda/bin/python /usr/bin/python3}"

find_python() {
    for python in $CANDIDATES; do
        if [ -x "$python" ] && "$python" -c "import ipykernel" >/dev/null 2>&1; then
            echo "$python"
            return 0
        fi
    done
    return 1
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    export DEBIAN_FRONTEND=noninteractive
    for attempt in 1 2 3; do
        # Another apt (unattended-upgrades at first boot) may hold the lock: wait and retry.
        if apt-get -o DPkg::Lock::Timeout=120 update -qq &&
            apt-get -o DPkg::Lock::Timeout=120 install -y -qq "$@"; then
            return 0
        fi
        sleep $((attempt * ${JCS_APT_RETRY_DELAY:-10}))
    done
    return 1
}

PYTHON="$(find_python)"
if [ -z "$PYTHON" ]; then
    say "installing python3 and ipykernel"
    apt_install python3 python3-ipykernel rsync ||
        fail "could not install python3-ipykernel (apt-get failed or this image has no apt); use a Debian, Ubuntu or Deep Learning VM image"
    PYTHON="$(find_python)" || fail "python3 has no ipykernel after installing python3-ipykernel"
fi

if [ "$ENGINE" = docker ] && ! command -v docker >/dev/null 2>&1; then
    say "installing Docker"
    apt_install docker.io || fail "could not install Docker (docker.io) for this server's image"
fi
if [ -n "$USER_NAME" ] && command -v docker >/dev/null 2>&1 && id -u "$USER_NAME" >/dev/null 2>&1; then
    usermod -aG docker "$USER_NAME" || true
fi

# An NVIDIA device on the PCI bus (vendor 0x10de) needs a working driver before kernels use it.
if grep -qs 0x10de /sys/bus/pci/devices/*/vendor; then
    waited=0
    until nvidia-smi >/dev/null 2>&1; do
        if [ "$waited" -ge 1200 ]; then
            fail "the VM has an NVIDIA GPU but no working driver after 20 minutes (nvidia-smi fails); use a GPU image (Deep Learning VM) that installs it"
        fi
        say "waiting for the NVIDIA driver (installed at first boot; this takes a few minutes)"
        sleep 10
        waited=$((waited + 10))
    done
fi

attr python "$PYTHON"
attr ready "$BOOT_ID"
say "ready"
