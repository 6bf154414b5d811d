"""Jupyter Server configuration for the browser tests (galata), used by playwright.config.js.

Never use it for anything else: it turns off authentication and exposes the application
object in the page (``window.jupyterapp``).

Each run gets its own temporary directories, so the tests neither read nor write the
developer's files, workspaces, settings or compute servers state.
"""

import atexit
import json
import os
import shutil
import sys
from importlib.resources import files
from pathlib import Path
from tempfile import mkdtemp

from jupyterlab.galata import configure_jupyter_server

# The Jupyter data dir is where the extension keeps its state. It is read lazily (after this
# file is loaded), so pointing it at a fresh directory here isolates each run. Extensions
# installed in sys.prefix (like this one, by `jupyter labextension develop --sys-prefix`)
# are still found.
_temp_dirs = {
    name: mkdtemp(prefix=f"jcs-ui-{name}-") for name in ("data", "runtime", "root", "settings")
}
atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _temp_dirs.values()])

os.environ["JUPYTER_DATA_DIR"] = _temp_dirs["data"]
os.environ["JUPYTER_RUNTIME_DIR"] = _temp_dirs["runtime"]

configure_jupyter_server(c)  # noqa: F821

# A port of its own, so that a running `make lab` (8888) does not get in the way.
c.ServerApp.port = int(os.environ.get("UI_TESTS_PORT", "8899"))  # noqa: F821
c.ServerApp.root_dir = _temp_dirs["root"]  # noqa: F821
c.LabApp.user_settings_dir = _temp_dirs["settings"]  # noqa: F821

# The compute servers' kernel specs (compute-<id>-<kernel>) go to the data dir above, never to
# the developer's ~/.local/share/jupyter/kernels; said explicitly, whatever the default is.
c.ComputeServersApp.kernel_specs_dir = os.path.join(_temp_dirs["data"], "kernels")  # noqa: F821

# The clouds the status banner lists (and the screenshots show), whatever the default is.
c.ComputeServersApp.enabled_clouds = ["local"]  # noqa: F821
# A test that fails half-way must not leave a sandbox running after the server stops.
c.LocalCloud.stop_on_shutdown = True  # noqa: F821

# Prices and images the create and edit dialogs' tests can see change: the local cloud at
# $0.05 a vCPU-hour and $0.73 a disk GB-month (free by default), and the built-in image
# catalogue with an untested version of the machine's own Python (the "Advanced" switch).
_prices = os.path.join(_temp_dirs["data"], "local-prices.json")
with open(_prices, "w") as f:
    json.dump(
        {
            "cloud": "local",
            "kind": "rate_card",
            "currency": "USD",
            "sources": {"ui-tests": {"url": __file__, "as_of": "2030-01-01"}},
            "rates": {
                "vcpu_hour": {"price": 0.05, "source": "ui-tests"},
                "disk_gb_month": {"price": 0.73, "source": "ui-tests"},
            },
        },
        f,
    )
c.ComputeServerCosts.price_tables = {"local": _prices}  # noqa: F821
_catalog = json.loads(
    files("jupyter_compute_servers").joinpath("images", "catalog.json").read_text()
)
for _image in _catalog["images"]:
    if _image["id"] == "python":
        _image["versions"].append(
            {"tag": "preview", "label": "Python preview (ui-tests)", "tested": False}
        )
# A container image that really runs (tests/container_image.py: Debian's python3-ipykernel,
# built once per machine with mmdebstrap and kept by podman), for the test that picks it in
# the create dialog. The engine gets this machine's settings (runc, cgroupfs, ulimits) for the
# tests only. Without podman or mmdebstrap the image is not offered, and that test fails
# saying so; the others run.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.container_image import CONTAINERS_CONF, KERNEL_PACKAGES, debian_image  # noqa: E402

os.environ["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
try:
    _image = debian_image("jcs-test-ipykernel", KERNEL_PACKAGES)
except Exception as e:  # noqa: BLE001 - said on stderr; the test that needs it fails
    print(f"ui-tests: no container image for the container test: {e}", file=sys.stderr)
else:
    _repository, _tag = _image.rsplit(":", 1)
    _catalog["images"].append(
        {
            "id": "debian-test",
            "label": "Debian Python (ui-tests container)",
            "description": "Debian's python3-ipykernel in a podman container, built here.",
            "priority": 10,
            "gpu": "none",
            "runtime": {"kind": "podman", "image": f"{_repository}:{{tag}}"},
            "versions": [{"tag": _tag, "label": "bookworm (built here)", "tested": True}],
        }
    )
_catalog_path = os.path.join(_temp_dirs["data"], "images.json")
with open(_catalog_path, "w") as f:
    json.dump(_catalog, f)
c.ComputeServersApp.image_catalog = _catalog_path  # noqa: F821

# Only errors in the test output; set UI_TESTS_LOG_LEVEL=DEBUG to see everything.
c.ServerApp.log_level = c.LabApp.log_level = os.environ.get(  # noqa: F821
    "UI_TESTS_LOG_LEVEL", "ERROR"
)

# The slurm cloud's server (UI_TESTS_SLURM_INFO set: playwright.config.js starts a second
# server for slurm.spec.ts): the tests' one-node Slurm cluster and a real OpenSSH sshd as its
# login node (tests/slurm.py, tests/sshd.py), stopped when this server exits. The login node's
# key is in the known_hosts of this server's own HOME, so registering it pins that key; how to
# reach it is written to UI_TESTS_SLURM_INFO for the test to register it.
_slurm_info = os.environ.get("UI_TESTS_SLURM_INFO")
if _slurm_info:
    import contextlib
    import sys
    from pathlib import Path

    import asyncssh

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.slurm import start_cluster
    from tests.sshd import start_sshd

    _base = Path(mkdtemp(prefix="jcs-ui-slurm-"))
    _cluster = start_cluster(_base / "slurm")
    _key = asyncssh.generate_private_key("ssh-ed25519")
    _home = _base / "home"
    (_home / ".ssh").mkdir(parents=True)
    _identity = _home / ".ssh" / "id_cluster"
    _identity.write_bytes(_key.export_private_key())
    _identity.chmod(0o600)
    (_base / "cluster-home").mkdir()
    (_base / "sshd").mkdir()
    _sshd = start_sshd(
        _base / "sshd",
        _key.export_public_key().decode().strip(),
        env={"HOME": str(_base / "cluster-home"), "SLURM_CONF": str(_cluster.conf)},
    )
    (_home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{_sshd.port} {_sshd.host_key}\n")
    os.environ["HOME"] = str(_home)

    def _stop_slurm() -> None:
        _sshd.process.terminate()
        _sshd.process.wait()
        _cluster.stop()  # its jobs end with slurmd
        shutil.rmtree(_base, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.remove(_slurm_info)

    atexit.register(_stop_slurm)
    with open(_slurm_info, "w") as f:
        json.dump(
            {
                "name": "login",
                "hostname": "127.0.0.1",
                "port": _sshd.port,
                "username": _sshd.username,
                "identity_file": str(_identity),
                "python": sys.executable,
            },
            f,
        )
    c.ComputeServersApp.enabled_clouds = ["local", "slurm"]  # noqa: F821
    c.SlurmCloud.clusters = {  # noqa: F821
        "hpc": {"host": "login", "partitions": ["debug", "long"], "max_time_minutes": 600}
    }

# The openstack cloud's server (UI_TESTS_OPENSTACK set: playwright.config.js starts a third
# server for openstack.spec.ts): the fake OpenStack of the Python tests (tests/fake_openstack.py:
# Keystone, Nova, Glance and Neutron at the wire, each VM a real OpenSSH sshd on loopback),
# reached by openstacksdk through a clouds.yaml, closed (its VMs with it) when this server exits.
if os.environ.get("UI_TESTS_OPENSTACK"):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fake_openstack import FakeOpenStack

    _openstack_dir = Path(mkdtemp(prefix="jcs-ui-openstack-"))
    _openstack = FakeOpenStack(_openstack_dir / "cloud").start()

    def _stop_openstack() -> None:
        _openstack.close()
        shutil.rmtree(_openstack_dir, ignore_errors=True)

    atexit.register(_stop_openstack)
    c.ComputeServersApp.enabled_clouds = ["local", "openstack"]  # noqa: F821
    c.OpenStackCloud.clouds_yaml = str(  # noqa: F821
        _openstack.clouds_yaml(_openstack_dir / "clouds.yaml")
    )
    c.OpenStackCloud.cloud = "opengpu"  # noqa: F821
    c.OpenStackCloud.boot_images = {  # noqa: F821
        "*": "ubuntu-2204-20230914",
        "*gpu": "ubuntu-2204-nvidia-20230914",
    }
    c.OpenStackCloud.ssh_port = _openstack.ssh_port  # noqa: F821
    c.OpenStackCloud.ssh_username = __import__("getpass").getuser()  # noqa: F821
    c.OpenStackCloud.python = sys.executable  # noqa: F821
    c.OpenStackCloud.poll_interval = 0.1  # noqa: F821
    c.OpenStackCloud.flavor_rates = {"gpu_medium": 1.2}  # noqa: F821

# The team-mode server (UI_TESTS_TEAM_INFO set: playwright.config.js starts it for team.spec.ts
# only): one Jupyter in team mode whose every request is the admin "root" (galata turns
# authentication off; the identity provider below names the user), on a store of its own. A
# second owner's server is made by the test through the command line as "alice", on the same
# store: where it is is written to UI_TESTS_TEAM_INFO.
_team_info = os.environ.get("UI_TESTS_TEAM_INFO")
if _team_info:
    from jupyter_server.auth.identity import PasswordIdentityProvider, User
    from jupyter_server.utils import ensure_async

    class _Admin(PasswordIdentityProvider):
        """Every request is root's (an admin by team_admin_users); galata's settings (no
        token, no password) still apply, as they do to Jupyter's default provider."""

        async def get_user(self, handler):  # type: ignore[no-untyped-def]
            user = await ensure_async(super().get_user(handler))
            return None if user is None else User(username="root", name="root")

    _team_data = os.path.join(_temp_dirs["data"], "team")
    c.ServerApp.identity_provider_class = _Admin  # noqa: F821
    c.ComputeServersApp.data_dir = _team_data  # noqa: F821
    c.ComputeServersApp.team_mode = True  # noqa: F821
    c.ComputeServersApp.user = "root"  # noqa: F821
    c.ComputeServersApp.team_admin_users = ["root"]  # noqa: F821
    c.ComputeServersApp.quotas = {"*": {"running_servers": 2, "monthly_spend": 25}}  # noqa: F821
    c.ComputeServersApp.team_queue_user_cap = 1  # noqa: F821
    with open(_team_info, "w") as f:
        json.dump(
            {
                "data_dir": _team_data,
                "cli": os.path.join(os.path.dirname(sys.executable), "jupyter-compute-servers"),
                "env": {"JUPYTER_DATA_DIR": _temp_dirs["data"]},
            },
            f,
        )
