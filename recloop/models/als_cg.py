"""ALS's conjugate-gradient half-sweep, one fused loop per row, compiled with numba.

Row ``u`` solves ``(O^T O + regularization I + O^T W_u O) x_u = O^T (1 + w_u)`` with
``steps`` CG iterations from its previous ``x_u`` (G. Takács, I. Pilászy, D. Tikk,
RecSys 2011; the loop of ``implicit`` and of LensKit's ALS). Each row reads every
``o_i`` of its history once per product and uses it twice while it is in cache: the dot
``p_u . o_i`` and the update ``ap_u += w_ui (p_u . o_i) o_i``. The former torch version
made these two separate passes over all nonzeros (a sampled dense-dense product, then a
sparse-dense product), each gathering ``nnz`` rows of ``O`` and writing ``nnz``-long
temporaries; once ``O`` outgrew the cache (54k items x 64 floats at 1e7 interactions)
its cost per interaction doubled, where this loop's stays flat.

Rows are independent and each is computed start to end by one thread, so the result does
not depend on the thread count. Threads: numba's OpenMP layer, which is the GNU OpenMP
runtime torch has loaded (same wait policy); its count follows ``torch.get_num_threads()``.

Imported by :mod:`recloop.models.als` when a model is fitted, not when ``recloop.models``
is imported: numba and LLVM add ~120 MB to a process that only serves. Compiled on first
use (seconds) and cached on disk (numba's ``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange

# numba's default order tries TBB first, whose threads would not follow OpenMP's wait
# policy; prefer the OpenMP runtime torch uses (an explicit NUMBA_THREADING_LAYER wins).
numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


@numba.njit(parallel=True, fastmath={"reassoc", "contract"}, nogil=True, cache=True)
def _cg_rows(indptr, indices, values, other, gram, extra, x, out, steps, tiny):  # pragma: no cover - compiled
    n, f = x.shape
    zero = tiny - tiny  # 0 in the arrays' dtype
    for u in prange(n):
        start, stop = indptr[u], indptr[u + 1]
        xu = x[u].copy()
        e = extra[u]  # this row's penalty beyond the one in gram (0: none, the rows' common penalty)
        # r = b - A x = sum_i (c_ui - w_ui x_u . o_i) o_i - (G + e I) x_u   (c = w + 1)
        r = np.empty_like(xu)
        for k in range(f):
            acc = zero
            for j in range(f):
                acc -= gram[k, j] * xu[j]
            r[k] = acc
        if e != zero:
            for k in range(f):
                r[k] -= e * xu[k]
        for nz in range(start, stop):
            i, w = indices[nz], values[nz]
            dot = zero
            for k in range(f):
                dot += other[i, k] * xu[k]
            coef = (w + 1) - w * dot
            for k in range(f):
                r[k] += coef * other[i, k]
        p = r.copy()
        ap = np.empty_like(r)
        norm = zero
        for k in range(f):
            norm += r[k] * r[k]
        for _ in range(steps):
            if norm <= tiny:  # converged: nothing left to do for this row
                break
            # ap = A p = (G + e I) p + sum_i w_ui (p . o_i) o_i
            for k in range(f):
                acc = zero
                for j in range(f):
                    acc += gram[k, j] * p[j]
                ap[k] = acc
            if e != zero:
                for k in range(f):
                    ap[k] += e * p[k]
            for nz in range(start, stop):
                i = indices[nz]
                dot = zero
                for k in range(f):
                    dot += other[i, k] * p[k]
                dot *= values[nz]
                for k in range(f):
                    ap[k] += dot * other[i, k]
            curvature = zero
            for k in range(f):
                curvature += p[k] * ap[k]
            if curvature <= tiny:
                break
            step = norm / curvature
            new_norm = zero
            for k in range(f):
                xu[k] += step * p[k]
                r[k] -= step * ap[k]
                new_norm += r[k] * r[k]
            beta = new_norm / norm
            for k in range(f):
                p[k] = r[k] + beta * p[k]
            norm = new_norm
        out[u] = xu


def cg_rows(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, other: np.ndarray, gram: np.ndarray,
            x: np.ndarray, steps: int, extra: np.ndarray | None = None) -> np.ndarray:
    """``steps`` CG iterations for every row of the CSR ``(indptr, indices, values)``
    (``values``: ``c - 1`` on observed pairs) from ``x`` (``(n, f)``), against ``other``
    (``(m, f)``) and ``gram`` (``O^T O + regularization I``, ``(f, f)``). ``extra``: per-row
    penalties added to the diagonal beyond ``gram``'s (``(n,)``; None: none). All float
    arrays share one dtype; ``indptr`` is int64 and ``indices`` int32. Returns a new ``(n, f)``."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    out = np.empty_like(x)
    tiny = x.dtype.type(np.finfo(x.dtype).tiny)
    extra = np.zeros(len(x), dtype=x.dtype) if extra is None else np.ascontiguousarray(extra, dtype=x.dtype)
    _cg_rows(indptr, indices, values, other, gram, extra, x, out, steps, tiny)
    return out
