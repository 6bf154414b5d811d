"""What a sync never writes into the Jupyter root from a server unless the user allowed it.

The compute server is not trusted, and the Jupyter root is often the home directory
(JupyterHub's default). A file that a shell, git, an editor or a language runtime runs or reads
as configuration, without anyone choosing to run that file, would let whoever controls the
server run code here: ``.bashrc``, ``.zshenv``, ``.gitconfig`` (its ``core.fsmonitor`` runs on
every ``git status``), ``.git/hooks/``, ``.envrc``, ``.npmrc``, ``.Rprofile``, ``.julia/``,
``.ipython/profile_default/startup/``, ``.config/fish/``, ``.local/bin/``... A list of such
names always misses one, so the rule is wider:

- every path with a component that starts with "." (a dotfile, or anything inside a
  dot-directory), at any depth: per-directory configuration (``.git/``, ``.envrc``,
  ``.vscode/``, ``.npmrc``, ``.github/workflows/``) is read in sub-directories too;
- ``sitecustomize.py`` and ``usercustomize.py`` (Python imports them at start-up),
  ``jupyter_*_config.py``/``.json`` and ``ipython_*config.py`` (configuration that is code),
  ``_vimrc`` and ``_gvimrc``, anywhere;
- ``bin/`` and ``Library/`` at the root: many login shells put ``~/bin`` on the PATH, and
  macOS runs what ``~/Library/LaunchAgents`` names at login.

For those paths a sync does nothing that would change the Jupyter root: no pull, no delete,
no chmod, no conflict copy. They are not lost on the server either (nothing is done there for
them), and the sync's summary lists them (``held_back``). The user allows them by name: the
server's ``pull_executable_config`` setting, gitignore lines (``.gitignore``,
``proj/.env``, ``.config/fish/``); a line matching a directory allows everything in it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..agent.sync_agent import SyncExcludes

#: The rule, as gitignore lines (a directory's line holds back everything inside it).
HELD_BACK: tuple[str, ...] = (
    ".*",
    "sitecustomize.py",
    "usercustomize.py",
    "jupyter_*_config.py",
    "jupyter_*_config.json",
    "ipython_*config.py",
    "_vimrc",
    "_gvimrc",
    "/bin/",
    "/Library/",
)

#: What the sync summary says when it held files back.
MESSAGE = "held back: {n} file(s) that could run code here; allow them by name in Sync settings"


class HoldBack:
    """Whether a path of the Jupyter root may be written from the server: ``held(path)``."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self._rule = SyncExcludes(HELD_BACK)
        allowed = tuple(allowed)
        self._allowed = SyncExcludes(allowed) if allowed else None

    @staticmethod
    def _matches(excludes: SyncExcludes, path: str) -> bool:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if excludes.excluded("/".join(parts[:i]), True):
                return True
        return bool(excludes.excluded(path, False))

    def held(self, path: str) -> bool:
        if not self._matches(self._rule, path):
            return False
        return self._allowed is None or not self._matches(self._allowed, path)
