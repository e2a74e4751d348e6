"""A layer's saved training forwards, one per thread."""
from __future__ import annotations

import threading
import weakref


class PerThread:
    """One value per thread (a layer's saved training forward): each thread's
    backward consumes the forward that thread ran, so threads that train one
    layer at once never take each other's contexts. Entries go with their
    thread. ``accumulate`` is the lock under which backwards add into the
    layer's shared gradients. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values = weakref.WeakKeyDictionary()  # threading.Thread -> value
        self.accumulate = threading.Lock()

    def put(self, value) -> None:
        """This thread's value (None drops it)."""
        with self._lock:
            if value is None:
                self._values.pop(threading.current_thread(), None)
            else:
                self._values[threading.current_thread()] = value

    def peek(self):
        """This thread's value or None, kept."""
        with self._lock:
            return self._values.get(threading.current_thread())

    def take(self):
        """(this thread's value or None, removed; whether other threads hold one)."""
        with self._lock:
            mine = self._values.pop(threading.current_thread(), None)
            return mine, len(self._values) > 0
