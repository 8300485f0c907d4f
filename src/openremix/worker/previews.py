"""The worker's side of live previews: one batch's `PreviewCallback`.

Each job of the batch has one preview blob (`media.previews.preview_key`), overwritten at most
every `interval` seconds while the engine runs and deleted when the batch's run ends, whatever
its outcome, before the job is finished: a finished job has no preview left. (A worker killed
mid-run leaves its blob; the retention sweep deletes it with the job.) Storage errors are logged
and skipped: a preview is a courtesy and must never fail a job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from PIL import Image

from openremix.media.previews import encode_preview, preview_key
from openremix.media.storage import BlobStorage

log = logging.getLogger("openremix.worker")


class PreviewPublisher:
    """Stores live previews of a batch's jobs (`engine.base.PreviewCallback`)."""

    def __init__(self, storage: BlobStorage, request_ids: Sequence[str], interval: float,
                 wanted: Callable[[int], bool] = lambda index: True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`request_ids` in batch order (a job of several images once per image); `interval`
        seconds between previews (0: none); `wanted(index)` is False for a job that is no
        longer ours (cancelled, lease lost)."""
        self.storage = storage
        self.request_ids = list(request_ids)
        self.interval = interval
        self.wanted = wanted
        self.clock = clock
        self._last = clock()
        self._stored: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def due(self, step: int, total: int) -> bool:
        """A preview every `interval` seconds, none of the last step (the result follows)."""
        return self.enabled and step < total and self.clock() - self._last >= self.interval

    def __call__(self, step: int, total: int, images: Mapping[int, Image.Image]) -> None:
        self._last = self.clock()
        shown: set[str] = set()
        for index, image in sorted(images.items()):
            if not 0 <= index < len(self.request_ids):
                continue
            request_id = self.request_ids[index]
            if request_id in shown:  # a job of several images shows its first one's
                continue
            shown.add(request_id)
            key = preview_key(request_id)
            if not self.wanted(index):  # cancelled meanwhile: its preview goes now
                if key in self._stored:
                    self._delete(key)
                continue
            self._stored.add(key)  # before the write: a half-failed write is cleared too
            try:
                self.storage.put(key, encode_preview(image, step, total), "image/jpeg")
            except Exception:
                log.warning("could not store a preview", exc_info=True,
                            extra={"request_id": request_id})

    def clear(self) -> None:
        """Delete every preview this batch stored."""
        for key in sorted(self._stored):
            self._delete(key)

    def _delete(self, key: str) -> None:
        try:
            self.storage.delete(key)
            self._stored.discard(key)
        except Exception:
            log.warning("could not delete the preview %s", key, exc_info=True)
