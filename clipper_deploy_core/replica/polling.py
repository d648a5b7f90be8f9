"""A replica watches its link for a moment before it sleeps on it: a sleeping replica pays a wake-up per batch.

On a virtual machine an idle vCPU halts, and waking it for the next frame took 45 to 100 µs here (p90 up to several
hundred) against 20 µs between two busy processes: with one client at a time, that is a fifth of a query. So after
each reply the replica polls its link (or links: one per frontend process) for a short window before it blocks. The
window adapts as KVM's halt-polling does: it doubles (up to ``CLIPPER_DEPLOY_REPLICA_POLL_US``, 500 µs by default)
while frames arrive within that bound after a reply, and halves (down to none) while they do not. So polling costs at
most the window per batch, and nothing once traffic is sparse; an idle replica sleeps. Each turn of the poll yields the
CPU to any runnable process.
"""

from __future__ import annotations

import os
import select
import socket
import time

from .env_settings import seconds_from_env

POLL_ENV = "CLIPPER_DEPLOY_REPLICA_POLL_US"
POLL_DEFAULT_US = 500.0
GROW_FROM_S = 50e-6  # the first window once frames come close together; below it polling stops


def max_window_s() -> float:
    """``CLIPPER_DEPLOY_REPLICA_POLL_US`` in seconds (0 turns polling off)."""
    return seconds_from_env(POLL_ENV, POLL_DEFAULT_US, "microseconds", 1e6)


def next_window(window: float, waited: float, max_window: float) -> float:
    """The window after a wait of ``waited`` seconds that polling for ``window`` did not cover: larger if the frame
    came within ``max_window`` (a longer poll would have caught it), smaller, down to none, if it did not."""
    if waited <= max_window:
        return min(max_window, max(GROW_FROM_S, window * 2))
    smaller = window / 2
    return smaller if smaller >= GROW_FROM_S else 0.0


class Poller:
    """``wait()`` returns once a link is readable (a frame, or a frontend hanging up), or its ``timeout`` passed.
    Several links (a replica of a cluster with several frontend processes) share one window."""

    def __init__(self, *socks: socket.socket, max_window: float | None = None) -> None:
        self.max_window = max_window_s() if max_window is None else max_window
        self.window = 0.0
        self._poll = select.poll()  # not select.select: a model may hold descriptors past FD_SETSIZE
        for sock in socks:
            self.add(sock)

    def add(self, sock: socket.socket) -> None:
        self._poll.register(sock, select.POLLIN)

    def remove(self, sock: socket.socket) -> None:
        """Before ``sock`` closes: a closed descriptor would read as ready (POLLNVAL) at every poll."""
        self._poll.unregister(sock)

    def wait(self, timeout: float | None = None) -> None:
        if self.max_window <= 0:
            return  # polling is off: the blocking read sleeps
        start = time.perf_counter()
        end = start + self.window
        while True:
            if self._poll.poll(0):
                return  # already there, or caught by polling: the window stays
            if time.perf_counter() >= end:
                break
            os.sched_yield()
        self._poll.poll(None if timeout is None else max(0.0, timeout - (time.perf_counter() - start)) * 1e3)
        self.window = next_window(self.window, time.perf_counter() - start, self.max_window)
