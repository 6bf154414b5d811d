"""The queue of starts waiting for GPUs on an OpenStack cloud.

A cloud such as the open-gpu-server can expose only a few GPUs to VMs at a time; Nova answers a
GPU flavor it cannot place with the fault "No valid host". Rather than failing, a start waits
here, first come first served, and only the server at the head of the line asks Nova again, so
that servers get GPUs in the order they asked. The queue lives in this Jupyter server's memory
(as its operations do): a restart forgets it, and the operations it held are ended with it.
"""

from __future__ import annotations


class GPUQueue:
    def __init__(self) -> None:
        self._waiting: list[int] = []

    def join(self, server_id: int) -> None:
        if server_id not in self._waiting:
            self._waiting.append(server_id)

    def position(self, server_id: int) -> int:
        """1 for the head of the line; 0 when not waiting."""
        try:
            return self._waiting.index(server_id) + 1
        except ValueError:
            return 0

    def leave(self, server_id: int) -> None:
        if server_id in self._waiting:
            self._waiting.remove(server_id)

    def __len__(self) -> int:
        return len(self._waiting)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
