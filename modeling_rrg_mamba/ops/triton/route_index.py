"""Closed-form scan-route index maps for Triton kernels: the same orders as :func:`..routes.scan_order`, computed.

A route over ``L`` tokens is three bits (:meth:`..routes.Routes.flags`): ``TRANSPOSE`` (column-major grid order),
``REVERSE`` (walked backwards) and ``MIDDLE_CLS`` (a grid route of a sequence whose class token, at
``cls_position``, is visited in the middle of the walk). For a grid of ``height x width`` patches and step ``t``:

    t' = L - 1 - t if REVERSE else t
    p  = t' - [t' > m]   with m = (L - 1) // 2, the class token's step   (if MIDDLE_CLS; else p = t')
    q  = (p mod H) W + p div H   if TRANSPOSE else p                      (patch index, row-major)
    position = q + [q >= cls_position], or cls_position at t' = m       (if MIDDLE_CLS; else q)

:func:`route_position` computes that map and :func:`route_step` its inverse.
"""

from __future__ import annotations

try:  # the module is imported only where Triton is installed (see the package docstring)
    import triton
    import triton.language as tl
except ImportError as error:  # pragma: no cover - guarded by the callers
    raise ImportError("modeling_rrg_mamba.ops.triton needs the triton package") from error


@triton.jit
def route_position(
    t, length, height, width, cls_position, TRANSPOSE: tl.constexpr, REVERSE: tl.constexpr, MIDDLE_CLS: tl.constexpr
):
    """Token position a route visits at step ``t`` (int tensor, ``0 <= t < length``)."""
    if REVERSE:
        t = length - 1 - t
    if MIDDLE_CLS:
        middle = (length - 1) // 2
        p = t - (t > middle).to(t.dtype)
    else:
        p = t
    if TRANSPOSE:
        q = (p % height) * width + p // height
    else:
        q = p
    if MIDDLE_CLS:
        q = q + (q >= cls_position).to(q.dtype)
        q = tl.where(t == middle, cls_position, q)
    return q


@triton.jit
def route_step(
    q, length, height, width, cls_position, TRANSPOSE: tl.constexpr, REVERSE: tl.constexpr, MIDDLE_CLS: tl.constexpr
):
    """Step at which a route visits token position ``q``: the inverse of :func:`route_position`."""
    if MIDDLE_CLS:
        patch = q - (q > cls_position).to(q.dtype)
    else:
        patch = q
    if TRANSPOSE:
        p = (patch % width) * height + patch // width
    else:
        p = patch
    if MIDDLE_CLS:
        middle = (length - 1) // 2
        t = p + (p >= middle).to(p.dtype)
        t = tl.where(q == cls_position, middle, t)
    else:
        t = p
    if REVERSE:
        t = length - 1 - t
    return t
