"""Compiled CPU kernel of the two-time maps (numba): exact integer products of time steps.

A two-time map is one symmetric matrix product per bin (T^2 P / 2 multiply-adds for T steps
and P pixels): the CPU's peak multiply-add rate is the limit. Photon counts are small
integers, and x86 multiplies small integers faster than float32, summed exactly in int32 /
int64 where float32 rounds: int16 pairs at twice float32's rate (``vpmaddwd``, fused with the
add on CPUs with VNNI), bytes at four times it on CPUs with VNNI (``vpdpbusd``: four products
per int32 lane). So the counts, when they fit, are multiplied as int16 or bytes by a
register-blocked kernel (:func:`pair_products`); :mod:`speckle.xpcs.twotime` decides and keeps
float32 as the reference and for everything else (large or fractional values, the GPU).

Its own module, loaded only for two-time maps (it adds 0.1 s to numba's start-up); cached like
:mod:`.kernels` (:mod:`.kernel_cache`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types as nt
from numba.core import cgutils, config
from numba.extending import intrinsic

from .kernel_cache import OPTIONS, compiled

__all__ = ["BYTE_PRODUCTS", "PAIR_COLUMNS", "PAIR_ROWS", "pair_products", "row_sums"]


def _has_byte_products() -> bool:
    """Whether the CPU numba compiles for has VNNI's byte products (AVX-512 VNNI with 256-bit
    vectors, or AVX-VNNI); not when numba is told to compile for another CPU."""
    if config.CPU_NAME or config.CPU_FEATURES:
        return False
    features = llvm.get_host_cpu_features()
    return bool((features.get("avx512vnni") and features.get("avx512vl"))
                or features.get("avxvnni"))


#: Whether bytes (values 0-127) are multiplied with ``vpdpbusd`` here, four products per lane
#: and instruction; elsewhere they would be no faster than int16 pairs, which are used instead.
BYTE_PRODUCTS = _has_byte_products()


#: Register tile of pair_products: sums of PAIR_ROWS time steps against PAIR_COLUMNS time
#: steps, twelve vectors of eight int32 (fit the 16 vector registers of AVX2 with room to load).
PAIR_ROWS, PAIR_COLUMNS = 6, 16
#: Words (of 2 or 4 pixels) multiplied per packed block: the words of PAIR_ROWS rows stay in the
#: L1 cache while every column of a panel takes them.
_BLOCK_WORDS = 512


@intrinsic(prefer_literal=True)
def _pair_tile(typingctx, a, at, lda, packed, packed_at, k, sums, sums_at, lds, lanes):
    """``sums[r, c] += sum_q a[r, q] . b[c, q]`` over ``k`` int32 words of ``lanes`` values.

    ``lanes`` (a constant): 2 for two int16 values per word, 4 for four bytes (``a``'s
    unsigned, ``b``'s signed: the values 0-127 are the same in both). ``a`` (flat int32): row
    ``r`` of the tile starts at word ``at + r * lda``. ``packed`` holds the PAIR_COLUMNS rows
    of the other side transposed: word ``q`` of row ``c`` at ``packed_at + q * PAIR_COLUMNS +
    c``. ``sums`` (flat int32): row ``r`` of the tile at ``sums_at + r * lds``, held in
    registers meanwhile. Each step broadcasts one word of a row against the columns' words and
    adds the word's products to the int32 lanes. int16: in LLVM IR a widening multiply and the
    sum of its even and odd lanes, which x86 compiles to one ``vpmaddwd`` (``vpdpwssd``, add
    included, with VNNI); other CPUs get plain vector code. Bytes: ``vpdpbusd`` where
    :data:`BYTE_PRODUCTS`, else the same widening multiply with sums of four lanes. The caller
    keeps the sums below 2**31.
    """
    if not isinstance(lanes, nt.IntegerLiteral) or lanes.literal_value not in (2, 4):
        return None
    n_lanes = lanes.literal_value
    sig = nt.void(a, at, lda, packed, packed_at, k, sums, sums_at, lds, lanes)

    def codegen(context, builder, signature, args):
        a_v, at_v, lda_v, packed_v, packed_at_v, k_v, sums_v, sums_at_v, lds_v, _ = args
        a_ty, packed_ty, sums_ty = signature.args[0], signature.args[3], signature.args[6]
        a_ptr = context.make_array(a_ty)(context, builder, a_v).data
        p_ptr = context.make_array(packed_ty)(context, builder, packed_v).data
        s_ptr = context.make_array(sums_ty)(context, builder, sums_v).data
        i32, i64 = ir.IntType(32), ir.IntType(64)
        words = ir.VectorType(i32, 8)
        values = ir.VectorType(ir.IntType(32 // n_lanes), 8 * n_lanes)
        wide = ir.VectorType(i32, 8 * n_lanes)
        as_vector = words.as_pointer()
        picks = [ir.Constant(words, list(range(o, 8 * n_lanes, n_lanes)))
                 for o in range(n_lanes)]
        vnni = n_lanes == 4 and BYTE_PRODUCTS
        if vnni:
            dpbusd = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(words, [words, words, words]),
                "llvm.x86.avx512.vpdpbusd.256")

        def sums_at(r, c):
            at = builder.add(sums_at_v, builder.mul(ir.Constant(i64, r), lds_v))
            at = builder.add(at, ir.Constant(i64, 8 * c))
            return builder.bitcast(builder.gep(s_ptr, [at]), as_vector)

        def products(acc, x, y):
            """acc + the sums of the lanes' products of the words x (a's) and y (b's)."""
            if vnni:
                return builder.call(dpbusd, [acc, x, y])
            xs = builder.bitcast(x, values)
            xs = builder.zext(xs, wide) if n_lanes == 4 else builder.sext(xs, wide)
            prod = builder.mul(xs, builder.sext(builder.bitcast(y, values), wide))
            for pick in picks:
                acc = builder.add(acc, builder.shuffle_vector(prod, prod, pick))
            return acc

        accs = []
        for r in range(PAIR_ROWS):
            for c in range(2):
                acc = cgutils.alloca_once(builder, words)
                builder.store(builder.load(sums_at(r, c), align=4), acc)
                accs.append(acc)
        with cgutils.for_range(builder, k_v) as loop:
            q = loop.index
            col = builder.add(packed_at_v, builder.mul(q, ir.Constant(i64, PAIR_COLUMNS)))
            bs = [builder.load(builder.bitcast(builder.gep(p_ptr, [
                builder.add(col, ir.Constant(i64, half))]), as_vector), align=4)
                for half in (0, 8)]
            for r in range(PAIR_ROWS):
                at_r = builder.add(builder.add(at_v, builder.mul(ir.Constant(i64, r), lda_v)), q)
                word = builder.load(builder.gep(a_ptr, [at_r]), align=4)
                splat = builder.insert_element(ir.Constant(words, None), word,
                                               ir.Constant(i32, 0))
                splat = builder.shuffle_vector(splat, ir.Constant(words, None),
                                               ir.Constant(words, [0] * 8))
                for c, y in enumerate(bs):
                    acc = accs[2 * r + c]
                    builder.store(products(builder.load(acc), splat, y), acc)
        for r in range(PAIR_ROWS):
            for c in range(2):
                builder.store(builder.load(accs[2 * r + c]), sums_at(r, c), align=4)
        return context.get_dummy_value()

    return sig, codegen


@compiled("void(int32[:, ::1], int64, int64, int64, int64, float64[::1])", OPTIONS)
def row_sums(a, w0, words, rows, lanes, out):
    """``out[i]``: the sum of the values of words ``w0 .. w0 + words`` of row ``i`` of ``a``
    (``lanes`` 2: two int16 per int32 word; 4: four unsigned bytes), for the first ``rows``
    rows."""
    for i in range(rows):
        row = a[i, w0:w0 + words]
        s = 0
        if lanes == 2:
            for q in range(words):
                v = row[q]
                s += np.int16(v) + (v >> 16)  # the low int16 (truncated) and the high one
        else:
            for q in range(words):
                v = row[q]
                s += (v & 0xFF) + ((v >> 8) & 0xFF) + ((v >> 16) & 0xFF) + ((v >> 24) & 0xFF)
        out[i] = s


@compiled("void(int32[:, ::1], int32[:, ::1], int64, int64, int64, int64, int64, boolean, int64, "
          "int64, int64[::1], int32[:, ::1], int64[:, ::1], float64[::1], float64[::1], float64, "
          "float32[:, ::1])", OPTIONS)
def pair_products(a, b, lanes, w0, words, ta, tb, same, group, width, panels, G, total, sa, sb,
                  n, out):
    """Two-time map ``out[i, j] = n G[i, j] / (sa[i] sb[j])`` with ``G = a @ b.T`` exact.

    ``a`` and ``b`` hold the integer time series of pixels (time, pixels), ``lanes`` values per
    int32 word (2: int16; 4: bytes of values 0-127); words ``w0 .. w0 + words`` of each row are
    one bin's (zero-padded to whole words). The map is computed for the column panels ``panels`` (``width`` time steps of
    ``b`` each, a multiple of PAIR_COLUMNS; threads take disjoint panels) and every row of
    ``a``; with ``same`` (``a`` is ``b``) only its upper triangle, each value written to both
    triangles of ``out``. ``a`` has at least ``ta`` rounded up to PAIR_ROWS rows (what the rows
    past ``ta`` hold is not used); ``G`` at least that many rows and ``tb`` rounded up to
    ``width`` columns.

    The products are summed in int32 (``G``) over groups of at most ``group`` words, the
    caller's bound against overflow (``group * lanes * max|value|**2 < 2**31``); when the bin has
    more words than that, the groups' sums are added in int64 (``total``, shaped as ``G``;
    otherwise unused). Within a group, words are taken in blocks that stay in the cache: a
    block's words of a panel's columns are packed once, those of PAIR_ROWS rows read once for
    every column of the panel. ``sa``, ``sb``: the rows' sums; ``n``: pixels. The reference:
    the float32 matrix product in :func:`speckle.xpcs.twotime._normalised_product`.
    """
    lda, ldg = a.shape[1], G.shape[1]
    flat, gflat = a.reshape(-1), G.reshape(-1)
    cols = PAIR_COLUMNS
    block = min(_BLOCK_WORDS, group)
    packed = np.empty(width * block, np.int32)
    grouped = words > group
    for jp in panels:
        j0 = jp * width
        j1 = min(j0 + width, tb)
        rows = min(j1, ta) if same else ta
        if grouped:
            total[:rows, j0:j0 + width] = 0
        for g0 in range(w0, w0 + words, group):
            G[:rows, j0:j0 + width] = 0
            g1 = min(g0 + group, w0 + words)
            for k0 in range(g0, g1, block):
                w = min(block, g1 - k0)
                for c in range(width):  # sub-panel s = c // cols holds word q of column c at
                    at = (c // cols) * cols * w + c % cols  # s * cols * w + q * cols + c % cols
                    if j0 + c < tb:
                        row = b[j0 + c, k0:k0 + w]
                        for q in range(w):
                            packed[at + q * cols] = row[q]
                    else:
                        for q in range(w):
                            packed[at + q * cols] = 0
                for i0 in range(0, rows, PAIR_ROWS):
                    for s in range((j1 - j0 + cols - 1) // cols):
                        js = j0 + s * cols
                        if same and i0 >= js + cols:
                            continue  # below the diagonal
                        if lanes == 4:
                            _pair_tile(flat, i0 * lda + k0, lda, packed, s * cols * w, w,
                                       gflat, i0 * ldg + js, ldg, 4)
                        else:
                            _pair_tile(flat, i0 * lda + k0, lda, packed, s * cols * w, w,
                                       gflat, i0 * ldg + js, ldg, 2)
            if grouped:
                total[:rows, j0:j0 + width] += G[:rows, j0:j0 + width]
        for i in range(rows):  # row by row: out's rows and (same) its columns are written in order
            scale = n / sa[i]
            for j in range(max(i, j0) if same else j0, j1):
                v = np.float32((total[i, j] if grouped else G[i, j]) * scale / sb[j])
                out[i, j] = v
                if same:
                    out[j, i] = v
