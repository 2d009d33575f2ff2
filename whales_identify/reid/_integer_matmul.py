"""Exact integer products of uint8 descriptors, scaled per gallery row, in one native call.

Geometric verification's ratio test compares every query descriptor with every descriptor of up
to 16 gallery photos (a (500 x 128) by (128 x 8000) product per chunk): it was ~45 % of a query's
CPU at 2k photos as a float32 BLAS product of normalised copies. The stored descriptors are
uint8, so the same cosines are (integer dot product) / (the two integer norms): ONNX Runtime's
`MatMulIntegerToFloat` (an integer kernel, about twice the float32 rate on AVX2, and the per-column
scaling done in the same pass) computes the dot products exactly, where the float32 product
rounded every term. Two kernels: uint8 x int8 where both sides are below 128 (RootSIFT * 255
stays under ~90 in practice: `vpmaddubsw` then cannot saturate, 2 * 127 * 127 < 2**15, and it is
~20 % faster), uint8 x uint8 otherwise. The run releases the GIL, so concurrent queries use both
cores.

onnxruntime is already a core dependency (the embedders); the `onnx` package is not (it is in the
`export` extra), so the two-node graph is written here as protobuf bytes.
"""

from __future__ import annotations

import threading

import numpy as np

_UINT8, _INT8, _FLOAT = 2, 3, 1  # onnx.TensorProto.DataType
_sessions: dict[bool, object] = {}
_lock = threading.Lock()


def scaled_products(query: np.ndarray, gallery: np.ndarray, gallery_scale: np.ndarray) -> np.ndarray:
    """`(query @ gallery.T) * gallery_scale`, the products exact before the scaling.

    Args:
        query: (Kq, D) uint8.
        gallery: (M, D) uint8.
        gallery_scale: (M,) float32, a factor per gallery row (e.g. its inverse norm).

    Returns:
        (Kq, M) float32: each entry one float32 rounding of integer x scale.
    """
    signed = bool(query.size and gallery.size and query.max() < 128 and gallery.max() < 128)
    feed = {"Q": np.ascontiguousarray(query, np.uint8),
            "G": np.ascontiguousarray(gallery).view(np.int8 if signed else np.uint8),
            "a_scale": np.ones(1, np.float32),
            "b_scale": np.ascontiguousarray(gallery_scale, np.float32)}
    return _session(signed).run(None, feed)[0]  # type: ignore[attr-defined]


def _session(signed: bool) -> object:
    with _lock:  # one session per kernel and process, made on first use
        if signed not in _sessions:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            # one core per query, like the BLAS products it replaces: concurrency comes from requests
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            _sessions[signed] = ort.InferenceSession(_model(signed), opts,
                                                     providers=["CPUExecutionProvider"])
        return _sessions[signed]


# ---------------------------------------------------------------- protobuf (onnx.proto field numbers)
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, elem_type: int, dims: list[str | int]) -> bytes:
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims)
    tensor_type = _int(1, elem_type) + _bytes(2, shape)  # TypeProto.Tensor{elem_type, shape}
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))  # ValueInfoProto{name, type}


def _node(op: str, inputs: list[str], outputs: list[str], domain: str = "", attrs: bytes = b"") -> bytes:
    return (b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
            + _bytes(4, op) + attrs + (_bytes(7, domain) if domain else b""))


def _model(signed: bool) -> bytes:
    """Z = MatMulIntegerToFloat(Q, Transpose(G), a_scale, b_scale): Q uint8, G (u)int8, Z float."""
    perm = _bytes(5, _bytes(1, "perm") + _int(20, 7) + _int(8, 1) + _int(8, 0))  # INTS [1, 0]
    graph = (_bytes(1, _node("Transpose", ["G"], ["Gt"], attrs=perm))
             + _bytes(1, _node("MatMulIntegerToFloat", ["Q", "Gt", "a_scale", "b_scale"], ["Z"],
                               domain="com.microsoft"))
             + _bytes(2, "scaled_products")
             + _bytes(11, _value_info("Q", _UINT8, ["q", "d"]))
             + _bytes(11, _value_info("G", _INT8 if signed else _UINT8, ["m", "d"]))
             + _bytes(11, _value_info("a_scale", _FLOAT, [1]))
             + _bytes(11, _value_info("b_scale", _FLOAT, ["m"]))
             + _bytes(12, _value_info("Z", _FLOAT, ["q", "m"])))
    opsets = _bytes(8, _int(2, 17)) + _bytes(8, _bytes(1, "com.microsoft") + _int(2, 1))
    return _int(1, 9) + opsets + _bytes(7, graph)  # ir_version 9
