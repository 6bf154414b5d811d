"""Silence the third-party warnings that users of our entry points cannot act on.

Every entry point (the CLI, the server extension, the kernel provisioner that jupyter_client
loads, the local cloud's SSH server) imports this package first, so the filters are installed
before the libraries that warn are imported. Each filter names both the warning's category and
the module it is attributed to: the same category raised from any other module, our own code
included, still shows.
"""

from __future__ import annotations

import warnings

# (category's module, category's name, regex of the modules whose warnings are hidden, why)
KNOWN_THIRD_PARTY_WARNINGS: tuple[tuple[str, str, str, str], ...] = (
    (
        "cryptography.utils",
        "CryptographyDeprecationWarning",
        r"asyncssh(\.|$)",
        # cryptography 47+ deprecates DSA; asyncssh still names the DSA key classes in its
        # type aliases at import, which warns five times although we never use a DSA key.
        "asyncssh names cryptography's deprecated DSA classes on import",
    ),
)


def install_warning_filters() -> None:
    """Hide the known third-party warnings, each only where it is raised."""
    for category_module, category_name, raised_in, _why in KNOWN_THIRD_PARTY_WARNINGS:
        try:
            module = __import__(category_module, fromlist=[category_name])
            category = getattr(module, category_name)
        except (ImportError, AttributeError):
            continue  # a release without this warning: nothing to hide
        warnings.filterwarnings("ignore", category=category, module=raised_in)
