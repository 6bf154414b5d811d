"""Reading a document at an http(s) URL with a size bound and a time bound (standard library
only, blocking: callers on an event loop run it in a thread)."""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.request


class FetchError(OSError):
    """The document could not be read; the message says why, naming the limit it hit."""


def read_url(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    timeout_setting: str = "",
    size_setting: str = "",
) -> bytes:
    """The body at ``url``: at most ``max_bytes``, all of it within about ``timeout`` seconds
    (a server that answers slowly, or never stops answering, is cut off)."""
    deadline = time.monotonic() + timeout
    too_slow = f"no complete answer within {timeout:g} s" + (
        f" (the limit {timeout_setting})" if timeout_setting else ""
    )
    too_large = f"larger than the limit of {max_bytes} bytes" + (
        f" ({size_setting})" if size_setting else ""
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise FetchError(f"it is {length} bytes, {too_large}")
            # The socket's timeout bounds each wait; the deadline bounds them all.
            sock = getattr(getattr(response.fp, "raw", None), "_sock", None)
            body = bytearray()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FetchError(too_slow)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.settimeout(left)
                chunk = response.read1(65536)
                if not chunk:
                    return bytes(body)
                body += chunk
                if len(body) > max_bytes:
                    raise FetchError(f"it is {too_large}")
    except FetchError:
        raise
    except TimeoutError:
        raise FetchError(too_slow) from None
    except urllib.error.HTTPError as e:
        raise FetchError(str(e)) from None  # "HTTP Error 404: Not Found"
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise FetchError(too_slow) from None
        raise FetchError(str(e.reason)) from None
    except (OSError, ValueError) as e:  # a bad URL is a ValueError
        raise FetchError(str(e) or type(e).__name__) from None
