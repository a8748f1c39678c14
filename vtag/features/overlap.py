"""Work run beside the caller's: a function in a thread (`Job`), a generator produced ahead in a
thread through a bounded queue (`ahead`). Extraction overlaps decoding, audio and Inception this way;
FFmpeg, NumPy and torch release the GIL in their heavy parts."""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator


class Job(threading.Thread):
    """A function run in a thread; `result()` waits and returns its value or raises its error."""

    def __init__(self, fn: Callable, *args) -> None:
        super().__init__(daemon=True)
        self._call, self._value, self._error = (fn, args), None, None
        self.start()

    def run(self) -> None:
        fn, args = self._call
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def result(self):
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


def ahead(items: Iterator, depth: int) -> Iterator:
    """`items` produced in a thread, up to `depth` ahead of the consumer (decoding and Inception
    overlap: FFmpeg and torch both release the GIL). Errors come out where the item would have."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as exc:
            put((False, exc))
        finally:
            items.close()  # the decoder's container closes in this thread

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        while True:
            is_item, value = slots.get()
            if is_item:
                yield value
            elif value is None:
                return
            else:
                raise value
    finally:
        stop.set()
        worker.join()
