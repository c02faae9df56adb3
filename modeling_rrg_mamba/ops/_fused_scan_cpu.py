"""Fused CPU selective scan: a C forward and backward kernel, compiled at first use and loaded with :mod:`ctypes`.

Why this means (issue 16). The reference CPU path (:class:`.selective_scan._SelectiveScanCPU`) is vectorised
PyTorch over time-major ``(L, B, D, N)`` buffers: at RRG-Mamba's sizes each buffer is ~19 MB, far past the caches,
and the forward and backward make a dozen element-wise passes over them, so the scan costs several times the
mixer's GEMMs. A fused kernel keeps the ``N`` states of one channel in registers while it walks the sequence (as
mamba-ssm's CUDA kernel does), and the backward recomputes the states of one channel into a per-thread scratch of
``L x N`` (12 KB at L=196: it stays in L1/L2) instead of saving them. Of the means considered:

* **Plain C through ctypes (chosen).** ~250 lines of C99 with no header but ``math.h``; ``cc -O3`` builds it in
  about a second (1.2 s measured here; a ``torch.utils.cpp_extension`` build spends tens of seconds on the
  ATen/pybind11 headers and needs ninja); the library is cached on disk, keyed by the source, flags and CPU
  (``-march=native``), so later processes (tests, the CLI) only ``dlopen`` it. The C source is a string in this
  module, so the remote-code exporter carries it like any other module. The hot ``exp`` is an inlined
  Cephes-style polynomial that the compiler vectorises over the state dimension (glibc's vector ``expf`` needs
  ``-ffast-math``, which would also reorder the reductions and drop NaN semantics); N=16 is specialised at
  compile time. Threads: OpenMP over batch x channels (forward) and over batch x groups x channel chunks
  (backward, each chunk with its own partial dB/dC rows, summed afterwards, so no atomics), dynamically scheduled,
  with ``torch.get_num_threads()`` threads; on Linux, PyTorch's wheels load their ``libgomp.so.1`` first, so the
  kernel runs on the very thread pool ATen uses (no second pool spinning against it). Without OpenMP (e.g. Apple
  clang) the build is retried serial. No new dependency. Per thread the backward keeps one channel's states and
  decays, ``2 L N`` values (25 KB at L=196, N=16, float32); nothing of size ``(L, B, D, N)`` is allocated, and only
  the inputs are saved for backward (as mamba-ssm does).
* numba: would add numba + llvmlite (~50 MB) as a dependency, costs seconds of JIT per process unless its cache
  works in the install location, and without Intel's SVML it does not vectorise ``exp``, the scan's hot op.
* torch.compile: needs the same C++ compiler, compiles for tens of seconds per shape/process, and a recurrence
  over L is a sequential loop that inductor unrolls or leaves to the very element-wise passes we want to avoid.

The same library holds the depthwise causal convolution of the Mamba mixer (``conv_f32`` / ``conv_f64``, used by
:func:`~modeling_rrg_mamba.ops.causal_conv1d` through :class:`CausalConv1dFused`).

Fallback. Without a C compiler (``CC`` or ``cc``/``gcc``/``clang`` on PATH), or when the build or load fails,
:func:`load_library` returns ``None`` and the caller keeps the reference path, with one warning per process (an
unwritable cache folder is not a failure: the build goes to a temp folder instead). ``RRG_MAMBA_SELECTIVE_SCAN=reference`` (or
:func:`~modeling_rrg_mamba.ops.set_selective_scan_backend`) forces the reference path, ``=fused`` makes a
missing fused path an error (for CI). ``RRG_MAMBA_KERNEL_CACHE`` moves the cache folder.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

Tensor = torch.Tensor

# One body, instantiated for float (f32) and double (f64). Layouts (all contiguous):
#   u, delta, z, out, du, ddelta, dz: (batch, dim, L);  A: (dim, N);  Bm, Cm: (batch, groups, L, N)
#   D, bias: (dim);  last, dlast: (batch, dim, N);  dA_part: (batch, dim, N);  dD_part, dbias_part: (batch, dim)
#   dB_part, dC_part: (chunks, batch, groups, L, N), zeroed by the caller.
_BODY = r"""
static inline T softplus_$S(T x) { return x > (T)20 ? x : (x > 0 ? x : 0) + LOG1P_EXP_NEG(x < 0 ? -x : x); }
static inline T sigmoid_$S(T x) { return (T)1 / ((T)1 + EXP(-x)); }

static void prepare_dt_$S(int64_t L, const T* delta, T bias, int softplus, T* dts, T* sig) {
    if (softplus) {
        #pragma omp simd
        for (int64_t t = 0; t < L; ++t) { T x = delta[t] + bias; dts[t] = softplus_$S(x); if (sig) sig[t] = x > (T)20 ? (T)1 : sigmoid_$S(x); }
    } else {
        #pragma omp simd
        for (int64_t t = 0; t < L; ++t) { dts[t] = delta[t] + bias; if (sig) sig[t] = (T)1; }
    }
}

/* One channel of the forward; always inlined so that the common N (16) is a compile-time constant. */
static INLINE void fwd_channel_$S(const int64_t L, const int64_t N, const T* up, const T* dts, const T* Ad,
        const T* Bp, const T* Cp, const T Dd, T* op, T* h) {
    for (int64_t n = 0; n < N; ++n) h[n] = 0;
    for (int64_t t = 0; t < L; ++t) {
        const T dt = dts[t], dtu = dt * up[t];
        const T* Bt = Bp + t * N; const T* Ct = Cp + t * N;
        T y = 0;
        #pragma omp simd reduction(+:y)
        for (int64_t n = 0; n < N; ++n) { T hn = EXP(dt * Ad[n]) * h[n] + dtu * Bt[n]; h[n] = hn; y += hn * Ct[n]; }
        op[t] = y + Dd * up[t];
    }
}

EXPORT int scan_fwd_$S(int64_t batch, int64_t dim, int64_t L, int64_t N, int64_t groups,
        const T* u, const T* delta, const T* A, const T* Bm, const T* Cm,
        const T* Dv, const T* z, const T* bias, int softplus, T* out, T* last, int nthreads) {
    const int64_t K = dim / groups;
    int failed = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        T* dts = (T*)malloc(sizeof(T) * (size_t)(L + 2 * N));
        T* h = dts + L;
        if (!dts) { failed = 1; } else {
        #pragma omp for schedule(dynamic, 16)
        for (int64_t item = 0; item < batch * dim; ++item) {
            const int64_t b = item / dim, d = item % dim, g = d / K;
            const T* up = u + item * L;
            const T* Ad = A + d * N;
            const T* Bp = Bm + (b * groups + g) * L * N;
            const T* Cp = Cm + (b * groups + g) * L * N;
            const T Dd = Dv ? Dv[d] : (T)0;
            T* op = out + item * L;
            prepare_dt_$S(L, delta + item * L, bias ? bias[d] : (T)0, softplus, dts, NULL);
            if (N == 16) fwd_channel_$S(L, 16, up, dts, Ad, Bp, Cp, Dd, op, h);
            else fwd_channel_$S(L, N, up, dts, Ad, Bp, Cp, Dd, op, h);
            if (z) {
                const T* zp = z + item * L;
                #pragma omp simd
                for (int64_t t = 0; t < L; ++t) op[t] *= zp[t] * sigmoid_$S(zp[t]);
            }
            for (int64_t n = 0; n < N; ++n) last[item * N + n] = h[n];
        }
        free(dts);
        }
    }
    return failed;
}

/* The reverse sweep of one channel (states H and decays E recomputed by the caller); returns d loss / d bias. */
static INLINE T bwd_reverse_$S(const int64_t L, const int64_t N, const T* up, const T* dts, const T* sig, const T* dy,
        const T* Ad, const T* Bp, const T* Cp, const T Dd, const T* H, const T* E, const T* ones, const T* zeros,
        T* gs, T* dAacc, T* dBp, T* dCp, T* dup, T* ddp) {
    T dbias = 0;
    for (int64_t t = L - 1; t >= 0; --t) {
        const T dt = dts[t], ut = up[t], dtu = dt * ut, dyt = dy[t];
        const T* Bt = Bp + t * N; const T* Ct = Cp + t * N;
        const T* Ht = H + t * N; const T* Et = E + t * N;
        const T* Enext = t + 1 < L ? E + (t + 1) * N : ones;
        const T* Hprev = t > 0 ? H + (t - 1) * N : zeros;
        T* dBt = dBp + t * N; T* dCt = dCp + t * N;
        T sgB = 0, sqA = 0;
        #pragma omp simd reduction(+:sgB, sqA)
        for (int64_t n = 0; n < N; ++n) {
            const T gn = gs[n] * Enext[n] + dyt * Ct[n];
            gs[n] = gn;
            dCt[n] += dyt * Ht[n];
            dBt[n] += gn * dtu;
            sgB += gn * Bt[n];
            const T q = gn * Hprev[n] * Et[n];
            sqA += q * Ad[n];
            dAacc[n] += q * dt;
        }
        dup[t] = dt * sgB + dyt * Dd;
        const T dd = (sqA + ut * sgB) * sig[t];
        ddp[t] = dd;
        dbias += dd;
    }
    return dbias;
}

/* Forward again over one channel, keeping its states H and decays E; fills dy (and dz); returns d loss / d D. */
static INLINE T bwd_recompute_$S(const int64_t L, const int64_t N, const T* up, const T* dts, const T* Ad,
        const T* Bp, const T* Cp, const T Dd, const T* zp, const T* dop, T* H, T* E, T* h, T* dy, T* dzp) {
    T dD = 0;
    for (int64_t n = 0; n < N; ++n) h[n] = 0;
    for (int64_t t = 0; t < L; ++t) {
        const T dt = dts[t], dtu = dt * up[t];
        const T* Bt = Bp + t * N; const T* Ct = Cp + t * N;
        T* Ht = H + t * N; T* Et = E + t * N;
        T y = 0;
        #pragma omp simd reduction(+:y)
        for (int64_t n = 0; n < N; ++n) { T e = EXP(dt * Ad[n]); T hn = e * h[n] + dtu * Bt[n]; Et[n] = e; Ht[n] = hn; h[n] = hn; y += hn * Ct[n]; }
        y += Dd * up[t];
        if (zp) {
            const T zt = zp[t], s = sigmoid_$S(zt);
            dzp[t] = dop[t] * y * s * ((T)1 + zt * ((T)1 - s));
            dy[t] = dop[t] * zt * s;
        } else {
            dy[t] = dop[t];
        }
        dD += dy[t] * up[t];
    }
    return dD;
}

EXPORT int scan_bwd_$S(int64_t batch, int64_t dim, int64_t L, int64_t N, int64_t groups, int64_t chunks,
        const T* u, const T* delta, const T* A, const T* Bm, const T* Cm,
        const T* Dv, const T* z, const T* bias, int softplus, const T* dout, const T* dlast,
        T* du, T* ddelta, T* dz, T* dA_part, T* dD_part, T* dbias_part, T* dB_part, T* dC_part, int nthreads) {
    const int64_t K = dim / groups;
    int failed = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        /* per thread: states H and decays E (L x N each), dts, sig, dy (L each), g, dAacc, ones, zeros (N each) */
        T* H = (T*)malloc(sizeof(T) * (size_t)(2 * L * N + 3 * L + 4 * N));
        if (!H) { failed = 1; } else {
        T* E = H + L * N; T* dts = E + L * N; T* sig = dts + L; T* dy = sig + L;
        T* gs = dy + L; T* dAacc = gs + N; T* ones = dAacc + N; T* zeros = ones + N;
        for (int64_t n = 0; n < N; ++n) { ones[n] = 1; zeros[n] = 0; }
        #pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < batch * groups * chunks; ++item) {
            const int64_t c = item % chunks, bg = item / chunks, b = bg / groups, g = bg % groups;
            const int64_t d0 = g * K + (c * K) / chunks, d1 = g * K + ((c + 1) * K) / chunks;
            const T* Bp = Bm + bg * L * N;
            const T* Cp = Cm + bg * L * N;
            T* dBp = dB_part + ((c * batch + b) * groups + g) * L * N;
            T* dCp = dC_part + ((c * batch + b) * groups + g) * L * N;
            for (int64_t d = d0; d < d1; ++d) {
                const int64_t ch = b * dim + d;
                const T* up = u + ch * L;
                const T* Ad = A + d * N;
                const T* dop = dout + ch * L;
                const T Dd = Dv ? Dv[d] : (T)0;
                prepare_dt_$S(L, delta + ch * L, bias ? bias[d] : (T)0, softplus, dts, sig);
                /* forward again, keeping the states and decays of this channel */
                const T* zp = z ? z + ch * L : NULL;
                T* dzp = z ? dz + ch * L : NULL;
                T dD;
                if (N == 16) dD = bwd_recompute_$S(L, 16, up, dts, Ad, Bp, Cp, Dd, zp, dop, H, E, gs, dy, dzp);
                else dD = bwd_recompute_$S(L, N, up, dts, Ad, Bp, Cp, Dd, zp, dop, H, E, gs, dy, dzp);
                /* reverse: g_t = dy_t C_t + E_{t+1} g_{t+1} */
                for (int64_t n = 0; n < N; ++n) { gs[n] = dlast ? dlast[ch * N + n] : (T)0; dAacc[n] = 0; }
                T dbias;
                if (N == 16) dbias = bwd_reverse_$S(L, 16, up, dts, sig, dy, Ad, Bp, Cp, Dd, H, E, ones, zeros, gs, dAacc, dBp, dCp, du + ch * L, ddelta + ch * L);
                else dbias = bwd_reverse_$S(L, N, up, dts, sig, dy, Ad, Bp, Cp, Dd, H, E, ones, zeros, gs, dAacc, dBp, dCp, du + ch * L, ddelta + ch * L);
                for (int64_t n = 0; n < N; ++n) dA_part[ch * N + n] = dAacc[n];
                if (dD_part) dD_part[ch] = dD;
                if (dbias_part) dbias_part[ch] = dbias;
            }
        }
        free(H);
        }
    }
    return failed;
}

/* One row of the depthwise causal convolution: pre_t = bias + sum_k w_k x_{t-W+1+k}
   (zeros before the row); one vectorised pass per tap. */
static void conv_row_$S(const int64_t L, const int64_t W, const T* xp, const T* wp, const T b, T* pre) {
    #pragma omp simd
    for (int64_t t = 0; t < L; ++t) pre[t] = b;
    for (int64_t k = 0; k < W; ++k) {
        const int64_t shift = W - 1 - k;
        const T wk = wp[k];
        #pragma omp simd
        for (int64_t t = shift; t < L; ++t) pre[t] += wk * xp[t - shift];
    }
}

/* x, out, dout, dx: (rows, L) with rows = batch x channels; w: (channels, W); bias: (channels) or NULL.
   Forward (dout NULL): out = pre (the caller applies the SiLU: vectorised here, it ran several times slower).
   Backward, pre recomputed per row into a per-thread scratch that stays in L1: g = dout * silu'(pre) (or dout),
   dx_s = sum_k w_k g_{s+W-1-k}, dw_part[row, k] = sum_t g_t x_{t-W+1+k}, dbias_part[row] = sum_t g_t (the
   caller sums the parts over the batch). */
EXPORT int conv_$S(int64_t rows, int64_t channels, int64_t L, int64_t W, const T* x, const T* w, const T* bias,
        int silu, T* out, const T* dout, T* dx, T* dw_part, T* dbias_part, int nthreads) {
    if (!dout) {
        #pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int64_t row = 0; row < rows; ++row) {
            const int64_t c = row % channels;
            conv_row_$S(L, W, x + row * L, w + c * W, bias ? bias[c] : (T)0, out + row * L);
        }
        return 0;
    }
    int failed = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        T* g = (T*)malloc(sizeof(T) * (size_t)L);
        if (!g) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t row = 0; row < rows; ++row) {
            if (!g) continue;
            const int64_t c = row % channels;
            const T* xp = x + row * L; const T* wp = w + c * W;
            conv_row_$S(L, W, xp, wp, bias ? bias[c] : (T)0, g);
            const T* dop = dout + row * L;
            T* dxp = dx + row * L;
            if (silu) {
                #pragma omp simd
                for (int64_t t = 0; t < L; ++t) { const T s = sigmoid_$S(g[t]); g[t] = dop[t] * s * ((T)1 + g[t] * ((T)1 - s)); }
            } else {
                memcpy(g, dop, sizeof(T) * (size_t)L);
            }
            T db = 0;
            #pragma omp simd reduction(+:db)
            for (int64_t t = 0; t < L; ++t) { db += g[t]; dxp[t] = 0; }
            dbias_part[row] = db;
            for (int64_t k = 0; k < W; ++k) {
                const int64_t shift = W - 1 - k;
                const T wk = wp[k];
                T dw = 0;
                #pragma omp simd reduction(+:dw)
                for (int64_t t = shift; t < L; ++t) { dw += g[t] * xp[t - shift]; dxp[t - shift] += wk * g[t]; }
                dw_part[row * W + k] = dw;
            }
        }
        free(g);
    }
    return failed;
}
"""

_HEADER = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(_WIN32)
#define EXPORT __declspec(dllexport)
#define INLINE static __forceinline
#else
#define EXPORT __attribute__((visibility("default")))
#define INLINE inline __attribute__((always_inline))
#endif

/* exp for float: Cephes' expf (range reduction by ln 2 in two parts, degree-7 polynomial, ~1 ulp), written
   branch-free so that the compiler vectorises it; arguments are clamped to [-87, 88] (normal results). */
static inline float exp_f32(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float k = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* log1p(exp(-a)) for a >= 0 in float: e = exp(-a) in (0, 1], log1p(e) = 2 atanh(e / (2 + e)), series to s^13. */
static inline float log1p_exp_neg_f32(float a) {
    const float e = exp_f32(-a), s = e / (2.0f + e), s2 = s * s;
    float p = 1.0f / 13.0f;
    p = p * s2 + 1.0f / 11.0f;
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return 2.0f * s * p;
}
"""


def kernel_source() -> str:
    """The complete C source: the header, then the body for float and for double."""
    f32 = _BODY.replace("$S", "f32")
    f64 = _BODY.replace("$S", "f64")
    return (
        _HEADER
        + "\n#define T float\n#define EXP exp_f32\n#define LOG1P_EXP_NEG log1p_exp_neg_f32\n"
        + f32
        + "\n#undef T\n#undef EXP\n#undef LOG1P_EXP_NEG\n"
        + "#define T double\n#define EXP exp\n#define LOG1P_EXP_NEG(a) log1p(exp(-(a)))\n"
        + f64
    )


def _cpu_fingerprint() -> str:
    """CPU model and feature flags (the library is built with ``-march=native``: never reuse it on another CPU)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            lines = [line for line in handle if line.startswith(("flags", "Features", "model name"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()}|{platform.processor()}"


def _cache_dir() -> Path:
    configured = os.environ.get("RRG_MAMBA_KERNEL_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "modeling_rrg_mamba" / "kernels"


def _compiler() -> str | None:
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


_FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp"],
    ["-O3", "-fopenmp"],
    ["-O3", "-march=native", "-fopenmp-simd"],
    ["-O3"],
)
_COMMON_FLAGS = ["-std=c99", "-shared", "-fPIC", "-fno-math-errno", "-fno-trapping-math"]


def _compile(compiler: str, source: Path, target: Path, flags: list) -> str | None:
    """Build ``target``; ``None`` on success, else the compiler's complaint."""
    command = [compiler, *_COMMON_FLAGS, *flags, str(source), "-o", str(target), "-lm"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as error:
        return str(error)
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()[-500:]


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    i64, ptr, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    for suffix in ("f32", "f64"):
        fwd = getattr(lib, f"scan_fwd_{suffix}")
        fwd.argtypes = [i64] * 5 + [ptr] * 8 + [cint, ptr, ptr, cint]
        fwd.restype = cint
        bwd = getattr(lib, f"scan_bwd_{suffix}")
        bwd.argtypes = [i64] * 6 + [ptr] * 8 + [cint] + [ptr] * 2 + [ptr] * 8 + [cint]
        bwd.restype = cint
        conv = getattr(lib, f"conv_{suffix}")
        conv.argtypes = [i64] * 4 + [ptr] * 3 + [cint] + [ptr] * 5 + [cint]
        conv.restype = cint
    return lib


def _build_and_load() -> tuple:
    """(library or None, reason when None)."""
    compiler = _compiler()
    if compiler is None:
        return None, "no C compiler found (set CC, or install cc/gcc/clang)"
    source = kernel_source()
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256(
            "\0".join([source, compiler, *flags, *_COMMON_FLAGS, platform.platform(), _cpu_fingerprint()]).encode()
        ).hexdigest()[:20]
        suffix = ".dll" if sys.platform == "win32" else ".so"
        for folder in (
            _cache_dir(),
            Path(tempfile.gettempdir()) / f"modeling_rrg_mamba-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}",
        ):
            target = folder / f"selective_scan_{key}{suffix}"
            if target.exists():
                try:
                    return _declare(ctypes.CDLL(str(target))), None
                except (OSError, AttributeError):
                    pass  # a stale or broken file: rebuild it
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=folder) as work:
                    c_file = Path(work) / "selective_scan.c"
                    c_file.write_text(source)
                    built = Path(work) / target.name
                    error = _compile(compiler, c_file, built, flags)
                    if error is not None:
                        errors.append(f"{' '.join(flags)}: {error}")
                        break  # the same flags fail in any folder: try the next flag set
                    os.replace(built, target)  # atomic: concurrent processes never load a half-written file
                return _declare(ctypes.CDLL(str(target))), None
            except (OSError, AttributeError) as error:
                errors.append(f"{folder}: {error}")
                continue  # unwritable cache: try the temp folder
    return None, "building the fused scan failed: " + " | ".join(errors)[-600:]


_lock = threading.Lock()
_state: dict = {}


def load_library() -> tuple:
    """The compiled kernels, built or loaded once per process: ``(library or None, reason when None)``."""
    if "lib" not in _state:
        with _lock:
            if "lib" not in _state:
                _state["lib"], _state["reason"] = _build_and_load()
    return _state["lib"], _state["reason"]


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _token_major(x: Tensor, groups: int) -> Tensor:
    """``(batch, N, L)`` or ``(batch, G', N, L)`` with G' in {1, groups} -> contiguous ``(batch, groups, L, N)``."""
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return x.expand(-1, groups, -1, -1).transpose(2, 3).contiguous()


def _chunks_per_group(batch: int, groups: int, per_group: int, threads: int) -> int:
    """Split each (batch, group) of the backward into enough pieces to give every thread ~8 of them (taken
    dynamically: a thread delayed by other load on the machine does not hold the others up)."""
    return max(1, min(per_group, -(-8 * threads // (batch * groups))))


class SelectiveScanFused(torch.autograd.Function):
    """The fused kernel: inputs in the compute dtype, ``u, delta, z`` ``(batch, dim, L)`` contiguous, ``A``
    ``(dim, N)``, B/C as given to ``selective_scan``; returns ``y`` (with D and the gate) and the last state."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool, groups: int):
        lib, _ = load_library()
        batch, dim, length = u.shape
        n = A.shape[1]
        Bm, Cm = _token_major(B, groups), _token_major(C, groups)
        out = torch.empty_like(u)
        last = u.new_empty(batch, dim, n)
        fn = lib.scan_fwd_f32 if u.dtype == torch.float32 else lib.scan_fwd_f64
        if fn(
            batch,
            dim,
            length,
            n,
            groups,
            _ptr(u),
            _ptr(delta),
            _ptr(A),
            _ptr(Bm),
            _ptr(Cm),
            _ptr(D),
            _ptr(z),
            _ptr(delta_bias),
            int(delta_softplus),
            _ptr(out),
            _ptr(last),
            torch.get_num_threads(),
        ):
            raise MemoryError("selective scan: the fused kernel could not allocate its scratch")
        ctx.save_for_backward(u, delta, A, Bm, Cm, D, z, delta_bias)
        ctx.softplus, ctx.groups, ctx.b_shape, ctx.c_shape = delta_softplus, groups, B.shape, C.shape
        return out, last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_last):
        lib, _ = load_library()
        u, delta, A, Bm, Cm, D, z, delta_bias = ctx.saved_tensors
        batch, dim, length = u.shape
        n, groups = A.shape[1], ctx.groups
        threads = torch.get_num_threads()
        chunks = _chunks_per_group(batch, groups, dim // groups, threads)
        grad_out = torch.zeros_like(u) if grad_out is None else grad_out.to(u.dtype).contiguous()
        grad_last = None if grad_last is None else grad_last.to(u.dtype).contiguous()
        du, ddelta = torch.empty_like(u), torch.empty_like(u)
        dz = torch.empty_like(u) if z is not None else None
        dA_part = u.new_empty(batch, dim, n)
        dD_part = u.new_empty(batch, dim) if D is not None else None
        dbias_part = u.new_empty(batch, dim) if delta_bias is not None else None
        dB_part = u.new_zeros(chunks, batch, groups, length, n)
        dC_part = u.new_zeros(chunks, batch, groups, length, n)
        fn = lib.scan_bwd_f32 if u.dtype == torch.float32 else lib.scan_bwd_f64
        if fn(
            batch,
            dim,
            length,
            n,
            groups,
            chunks,
            _ptr(u),
            _ptr(delta),
            _ptr(A),
            _ptr(Bm),
            _ptr(Cm),
            _ptr(D),
            _ptr(z),
            _ptr(delta_bias),
            int(ctx.softplus),
            _ptr(grad_out),
            _ptr(grad_last),
            _ptr(du),
            _ptr(ddelta),
            _ptr(dz),
            _ptr(dA_part),
            _ptr(dD_part),
            _ptr(dbias_part),
            _ptr(dB_part),
            _ptr(dC_part),
            threads,
        ):
            raise MemoryError("selective scan: the fused kernel could not allocate its scratch")
        return (
            du,
            ddelta,
            dA_part.sum(0),
            _fold_groups(dB_part, ctx.b_shape),
            _fold_groups(dC_part, ctx.c_shape),
            None if dD_part is None else dD_part.sum(0),
            dz,
            None if dbias_part is None else dbias_part.sum(0),
            None,
            None,
        )


def _fold_groups(part: Tensor, shape: torch.Size) -> Tensor:
    """``(chunks, batch, groups, L, N)`` partial sums -> the gradient of B or C in its given ``shape``."""
    grad = part.sum(0) if part.shape[0] > 1 else part[0]
    grad = grad.transpose(2, 3)  # (batch, groups, N, L)
    if len(shape) == 3:
        return grad.sum(1)
    if shape[1] != grad.shape[1]:  # one group given, broadcast over the other tensor's groups
        return grad.sum(1, keepdim=True)
    return grad


def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, silu: bool, out, grad_out=None, grads=(None, None, None)):
    """Call the C ``conv`` kernel: the forward (``grad_out`` None) writes ``out``, the backward ``grads``."""
    lib, _ = load_library()
    batch, dim, length = x.shape
    fn = lib.conv_f32 if x.dtype == torch.float32 else lib.conv_f64
    pointers = [_ptr(t) for t in (x, weight, bias)] + [int(silu)] + [_ptr(t) for t in (out, grad_out, *grads)]
    if fn(batch * dim, dim, length, weight.shape[1], *pointers, torch.get_num_threads()):
        raise MemoryError("causal conv1d: the fused kernel could not allocate its scratch")


class CausalConv1dFused(torch.autograd.Function):
    """Depthwise causal convolution (+ SiLU) by the C kernel: ``x`` ``(batch, dim, L)``, ``weight`` ``(dim, W)``,
    ``bias`` ``(dim,)`` or ``None``, all contiguous in float32 or float64. Saves only its inputs; the backward
    recomputes the pre-activation row by row, with the SiLU's derivative fused in."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, silu: bool) -> Tensor:
        out = torch.empty_like(x)
        _conv(x, weight, bias, silu, out)
        ctx.save_for_backward(x, weight, bias)
        ctx.silu = silu
        return torch.nn.functional.silu(out, inplace=True) if silu else out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, weight, bias = ctx.saved_tensors
        batch, dim, _ = x.shape
        dx, dw_part, dbias_part = (
            torch.empty_like(x),
            x.new_empty(batch, dim, weight.shape[1]),
            x.new_empty(batch, dim),
        )
        _conv(x, weight, bias, ctx.silu, None, grad_out.to(x.dtype).contiguous(), (dx, dw_part, dbias_part))
        return dx, dw_part.sum(0), None if bias is None else dbias_part.sum(0), None
