"""The Jupyter Server extension: configuration (``c.ComputeServersApp.*``) and wiring."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from traitlets import List, Unicode

from . import __version__
from .handlers.routes import api_handlers


class ComputeServersApp(ExtensionApp):
    """Compute servers for Jupyter: machines that run kernels, terminals and file sync."""

    name = "jupyter_compute_servers"
    app_name = "Compute Servers"
    description = __doc__
    version = __version__
    load_other_extensions = True

    enabled_clouds = List(
        Unicode(),
        default_value=[],
        help=(
            "Names of the clouds users may create compute servers on, in the order the UI "
            "offers them. Each name is an entry point in the 'jupyter_compute_servers.clouds' "
            "group."
        ),
    ).tag(config=True)

    def initialize_handlers(self) -> None:
        self.handlers.extend(api_handlers())
