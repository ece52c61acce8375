"""Float32 maths, bfloat16 conversions and tile transfers shared by the numba CPU kernels.

The maths (:func:`fast_exp`, :func:`softplus`, :func:`sigmoid`, :func:`silu`) is branch-free and calls no
library, so that LLVM vectorises the loops it is inlined into. bfloat16 tensors reach the kernels
without a cast: :func:`kernel_array` hands them over as int16 arrays of their bits, :func:`widen`
turns one element of either dtype into float32 and :func:`narrow_like` rounds a float32 to the dtype
of the array it is stored into (round to nearest even for bfloat16, as torch does).

Activations are passed in their logical order ``(sequence, position, channel)`` whatever their
memory layout: :func:`load_tile` and :func:`store_tile` move a block of positions x channels between
such an array and a small ``(position, lane)`` tile, walking the array's contiguous axis in the
inner loop (token-major arrays give contiguous copies, channel-major ones a transpose).
``error_model="numpy"`` keeps divisions free of Python's zero-division check, which would stop the
loops from vectorising.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

__all__ = [
    "fast_exp",
    "prefer_wide_vectors",
    "kernel_array",
    "load_tile",
    "narrow_like",
    "new_kernel_tensor",
    "sigmoid",
    "silu",
    "silu_grad",
    "softplus",
    "store_tile",
    "widen",
]

_F = np.float32
_LOG2E = _F(1.4426950408889634)
_LN2_HI = _F(0.693359375)  # ln(2) split in two for an exact range reduction (Cody-Waite)
_LN2_LO = _F(-2.12194440e-4)
_EXP_MIN = _F(-87.0)  # exp underflows to ~0 below, overflows above _EXP_MAX
_EXP_MAX = _F(88.0)
_HALF = _F(0.5)
_ONE = _F(1.0)
_C2, _C3, _C4, _C5, _C6 = _F(1 / 2), _F(1 / 6), _F(1 / 24), _F(1 / 120), _F(1 / 720)
_BF16_ROUND = 0x7FFF  # added (plus the kept lowest bit) before dropping 16 bits: round to nearest even


@intrinsic
def _float_from_bits(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (an LLVM bitcast; vectorisable)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def prefer_wide_vectors(typingctx):
    """Let LLVM vectorise the calling kernel's loops with the widest vectors (512-bit zmm with AVX-512).

    LLVM's tuning for recent Intel CPUs prefers 256-bit vectors (its ``prefer-256-bit`` feature); the
    function attribute ``"prefer-vector-width"="512"`` (what clang's ``-mprefer-vector-width=512``
    sets) lifts that for one function, and changes nothing where 512-bit vectors do not exist. The
    kernels' loops ran 1.2-1.9x faster with it. llvmlite's API takes only attribute names, so the
    ``key="value"`` pair goes into the function's attribute set directly.
    """

    def codegen(context, builder, signature, args):
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def fast_exp(x):
    """float32 exp with no branch or libm call, so loops over it vectorise (about 4 ulp)."""
    x = min(max(x, _EXP_MIN), _EXP_MAX)
    k = np.floor(x * _LOG2E + _HALF)
    r = x - k * _LN2_HI - k * _LN2_LO  # |r| <= ln(2) / 2
    poly = _ONE + r * (_ONE + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * _C6)))))
    return poly * _float_from_bits((np.int32(k) + 127) << 23)


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _log1p_unit(e):
    """log(1 + e) for e in [0, 1] as 2 atanh(e / (2 + e)) by its odd series (about 1e-7 relative)."""
    s = e / (_F(2.0) + e)  # s in [0, 1/3]
    s2 = s * s
    series = _ONE + s2 * (
        _F(1 / 3) + s2 * (_F(1 / 5) + s2 * (_F(1 / 7) + s2 * (_F(1 / 9) + s2 * (_F(1 / 11) + s2 * _F(1 / 13)))))
    )
    return _F(2.0) * s * series


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def softplus(raw):
    """softplus(raw) = max(raw, 0) + log(1 + exp(-|raw|)), branch-free (vectorisable)."""
    return max(raw, _F(0.0)) + _log1p_unit(fast_exp(-abs(raw)))


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def sigmoid(x):
    return _ONE / (_ONE + fast_exp(-x))


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def silu(x):
    return x * sigmoid(x)


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def silu_grad(x):
    """d silu(x) / dx = sigmoid(x) (1 + x (1 - sigmoid(x)))."""
    sig = sigmoid(x)
    return sig * (_ONE + x * (_ONE - sig))


@intrinsic
def _bfloat16_to_float(typingctx, bits):
    """The float32 of bfloat16 bits held in an int16 (zero-extend, shift, bitcast; 32-bit ops only)."""
    if not isinstance(bits, types.Integer) or bits.bitwidth != 16:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        wide = builder.shl(builder.zext(args[0], i32), ir.Constant(i32, 16))
        return builder.bitcast(wide, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _float_to_bfloat16(typingctx, value):
    """A float32 rounded to the nearest bfloat16 (ties to even), as int16 bits (32-bit ops only)."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        kept_lsb = builder.and_(builder.lshr(bits, ir.Constant(i32, 16)), ir.Constant(i32, 1))
        rounded = builder.add(builder.add(bits, ir.Constant(i32, _BF16_ROUND)), kept_lsb)
        return builder.trunc(builder.lshr(rounded, ir.Constant(i32, 16)), ir.IntType(16))

    return types.int16(value), codegen


def widen(value):
    """An array element as float32 (bfloat16 bits in an int16 are widened). Kernels only (see the overload)."""
    raise NotImplementedError("widen is only callable from numba kernels")


@overload(widen, inline="always")
def _widen_overload(value):
    if isinstance(value, types.Integer):
        return lambda value: _bfloat16_to_float(value)
    return lambda value: np.float32(value)


def narrow_like(value, array):
    """float32 ``value`` in the element type of ``array`` (bfloat16 bits for int16). Kernels only."""
    raise NotImplementedError("narrow_like is only callable from numba kernels")


@overload(narrow_like, inline="always")
def _narrow_like_overload(value, array):
    if isinstance(array.dtype, types.Integer):
        return lambda value, array: _float_to_bfloat16(np.float32(value))
    return lambda value, array: np.float32(value)


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def load_tile(src, seq, t_first, steps, reverse, c0, width, tile):
    """tile[k, w] = src[seq, t_k, c0 + w] as float32 for k < steps and w < width, where t_k = t_first + k,
    or t_first - k when ``reverse``. Lanes from ``width`` on are left as they are.

    Rows are sliced before the loops over them: indexing ``src[seq, t, c0 + w]`` directly makes numba
    check every index for wrap-around, and LLVM then gathers the elements one by one.
    """
    prefer_wide_vectors()
    step = -1 if reverse else 1
    if src.strides[2] <= src.strides[1]:  # channels contiguous: copy rows
        for k in range(steps):
            row = src[seq, t_first + step * k, c0 : c0 + width]
            out = tile[k]
            for w in range(width):
                out[w] = widen(row[w])
    else:  # positions contiguous: transpose
        for w in range(width):
            line = src[seq, :, c0 + w]
            for k in range(steps):
                tile[k, w] = widen(line[t_first + step * k])


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def store_tile(tile, seq, t_first, steps, reverse, c0, width, dst):
    """dst[seq, t_k, c0 + w] = tile[k, w] (rounded to dst's dtype); the inverse of :func:`load_tile`."""
    prefer_wide_vectors()
    step = -1 if reverse else 1
    if dst.strides[2] <= dst.strides[1]:
        for k in range(steps):
            row = dst[seq, t_first + step * k, c0 : c0 + width]
            values = tile[k]
            for w in range(width):
                row[w] = narrow_like(values[w], dst)
    else:
        for w in range(width):
            line = dst[seq, :, c0 + w]
            for k in range(steps):
                line[t_first + step * k] = narrow_like(tile[k, w], dst)


def kernel_array(tensor: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor for the kernels, without a copy for float32 and bfloat16.

    Args:
        tensor: any floating-point CPU tensor, any strides.

    Returns:
        float32 array sharing ``tensor``'s memory; for bfloat16, an int16 array of its bits; other
        dtypes are cast to a new float32 array.
    """
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy()
    return tensor.to(torch.float32).numpy()


def new_kernel_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, np.ndarray]:
    """An uninitialised tensor that a kernel will fill, and its :func:`kernel_array` view.

    Args:
        shape: tensor shape.
        dtype: ``torch.bfloat16`` (kernels write its bits), else the tensor is float32.
    """
    tensor = torch.empty(shape, dtype=torch.bfloat16 if dtype == torch.bfloat16 else torch.float32)
    return tensor, kernel_array(tensor)
