//! Matrix multiplication `C = epilogue(A · B)` with B packed ahead of time.
//!
//! # Packed B ("panel16") layout
//! B (`K × N`) is cut into `ceil(N / 16)` column panels of 16 columns. Panel `p` occupies
//! `K * 16` consecutive floats: element `(k, 16 p + j)` is at `p * K * 16 + k * 16 + j`.
//! Columns past `N` in the last panel are zero. The layout is the same on every instruction set,
//! so packed data written by one machine runs on any other.
//!
//! # Micro-kernel
//! A micro-tile computes `MR` rows × `16 * PANELS` columns in registers (AVX-512: 6 × 64,
//! AVX2: 6 × 16, NEON: 6 × 16, scalar: 4 × 16). A is read in place (row `r` at `a + r * lda`,
//! one broadcast per row and k), so activations never need packing; each k step loads one vector
//! per panel. The epilogue (bias, residual, activation) runs on the registers before the store.

use crate::epilogue::{Activation, Epilogue, ResidualAdd, finish};
use crate::error::{bad_operand, checked_product};
use crate::simd::Simd;
use crate::threads::{SendPtr, for_each_item};
use crate::{AlignedVec, Context, KernelError, dispatch};

/// Most rows a micro-tile has on any instruction set.
pub(crate) const MAX_MR: usize = 12;
/// Width of one packed panel.
pub(crate) const PANEL: usize = 16;

/// A run of the accumulation depth whose A values lie at a common row stride: row `r` reads
/// `k` floats at `a + r * lda` and multiplies them with packed B rows `b_row..b_row + k`.
/// A plain GEMM is one segment; an indirect convolution has one per kernel row, reading the
/// input in place.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    pub a: *const f32,
    pub k: usize,
    pub b_row: usize,
}

/// One micro-tile call. Pointers are raw because tiles of one output are written by several
/// threads; the driver guarantees every pointer is valid for the accessed range.
pub(crate) struct Tile<'r> {
    /// The accumulation, segment by segment; the tile's row `r` is row `row0 + r` of each.
    pub segments: &'r [Segment],
    pub row0: usize,
    pub lda: usize,
    /// First packed panel of this tile; panel `p` at `b + p * b_panel_stride`.
    pub b: *const f32,
    pub b_panel_stride: usize,
    /// Valid rows (1..=MR of the instruction set) and columns (1..=16 * PANELS).
    pub rows: usize,
    pub cols: usize,
    /// Output row pointers (at the tile's first column); `cols` floats written per row.
    pub c: &'r [*mut f32; MAX_MR],
    /// Bias at the tile's first column (`cols` floats), or null for none.
    pub bias: *const f32,
    /// Residual row pointers, read when the epilogue has a residual.
    pub residual: Option<&'r [*const f32; MAX_MR]>,
    pub epilogue: Epilogue,
}

/// The generic micro-kernel: `MR` rows, `NV` vectors of `S::LANES` columns.
///
/// # Safety
/// `t` must satisfy the [`Tile`] contract, `t.rows == MR`, `NV * S::LANES` must not exceed the
/// columns of the packed panels addressed, and the CPU must support `S`.
#[inline(always)]
pub(crate) unsafe fn tile_kernel<S: Simd, const MR: usize, const NV: usize>(t: &Tile) {
    // SAFETY: per the function contract.
    unsafe {
        let mut acc = [[S::zero(); NV]; MR];
        for seg in t.segments {
            let mut a_rows = [seg.a; MR];
            for (r, row) in a_rows.iter_mut().enumerate() {
                *row = seg.a.add((t.row0 + r) * t.lda);
            }
            let mut b_vecs = [t.b; NV];
            for (v, bp) in b_vecs.iter_mut().enumerate() {
                let col = v * S::LANES;
                *bp =
                    t.b.add((col / PANEL) * t.b_panel_stride + seg.b_row * PANEL + col % PANEL);
            }
            for kk in 0..seg.k {
                let mut b = [S::zero(); NV];
                for v in 0..NV {
                    b[v] = S::load(b_vecs[v].add(kk * PANEL));
                }
                for r in 0..MR {
                    let a = S::splat(*a_rows[r].add(kk));
                    for v in 0..NV {
                        acc[r][v] = S::fmadd(a, b[v], acc[r][v]);
                    }
                }
            }
        }
        for v in 0..NV {
            let col = v * S::LANES;
            if col >= t.cols {
                break;
            }
            let n = (t.cols - col).min(S::LANES);
            let bias = if t.bias.is_null() {
                S::zero()
            } else {
                S::load_n(t.bias.add(col), n)
            };
            for r in 0..MR {
                let residual = match t.residual {
                    Some(rows) if t.epilogue.residual != ResidualAdd::None => {
                        Some(S::load_n(rows[r].add(col), n))
                    }
                    _ => None,
                };
                let y = finish::<S>(acc[r][v], bias, residual, t.epilogue);
                S::store_n(t.c[r].add(col), y, n);
            }
        }
    }
}

/// Expands to a `match` on (rows, vectors) that calls the matching `tile_kernel` instance.
macro_rules! tile_match {
    ($S:ty, $t:expr, $nv:expr; $( ($r:literal, $v:literal) ),* $(,)?) => {
        match ($t.rows, $nv) {
            $( ($r, $v) => tile_kernel::<$S, $r, $v>($t), )*
            // The drivers only form tiles of 1..=MR rows and 1..=PANELS panels.
            (rows, nv) => unreachable!("micro-tile {rows} rows x {nv} vectors"),
        }
    };
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn gemm_tile_avx512(t: &Tile) {
    use crate::simd::avx512::Avx512;
    let nv = t.cols.div_ceil(16);
    // SAFETY: reached only on AVX-512 CPUs through `Isa`; the tile contract holds.
    unsafe {
        tile_match!(Avx512, t, nv;
            (1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (2, 4),
            (3, 1), (3, 2), (3, 3), (3, 4), (4, 1), (4, 2), (4, 3), (4, 4),
            (5, 1), (5, 2), (5, 3), (5, 4), (6, 1), (6, 2), (6, 3), (6, 4),
            (7, 1), (8, 1), (9, 1), (10, 1), (11, 1), (12, 1))
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gemm_tile_avx2(t: &Tile) {
    use crate::simd::avx2::Avx2;
    let nv = t.cols.div_ceil(8);
    // SAFETY: reached only on AVX2+FMA CPUs through `Isa`; the tile contract holds.
    unsafe {
        tile_match!(Avx2, t, nv;
            (1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2),
            (4, 1), (4, 2), (5, 1), (5, 2), (6, 1), (6, 2))
    }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemm_tile_neon(t: &Tile) {
    use crate::simd::neon::Neon;
    let nv = t.cols.div_ceil(4);
    // SAFETY: reached only on NEON CPUs through `Isa`; the tile contract holds.
    unsafe {
        tile_match!(Neon, t, nv;
            (1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (2, 4),
            (3, 1), (3, 2), (3, 3), (3, 4), (4, 1), (4, 2), (4, 3), (4, 4),
            (5, 1), (5, 2), (5, 3), (5, 4), (6, 1), (6, 2), (6, 3), (6, 4))
    }
}

/// The portable micro-tile: plain loops over a 4 × 16 block.
pub(crate) unsafe fn gemm_tile_scalar(t: &Tile) {
    let mut acc = [[0.0f32; PANEL]; 4];
    // SAFETY: per the tile contract.
    unsafe {
        for seg in t.segments {
            for kk in 0..seg.k {
                let b = std::slice::from_raw_parts(t.b.add((seg.b_row + kk) * PANEL), PANEL);
                for (r, acc_row) in acc.iter_mut().enumerate().take(t.rows) {
                    let a = *seg.a.add((t.row0 + r) * t.lda + kk);
                    for (acc, &b) in acc_row.iter_mut().zip(b) {
                        *acc += a * b;
                    }
                }
            }
        }
        for (r, acc_row) in acc.iter().enumerate().take(t.rows) {
            for (j, &acc) in acc_row.iter().enumerate().take(t.cols) {
                let mut x = acc;
                if !t.bias.is_null() {
                    x += *t.bias.add(j);
                }
                let residual = match t.residual {
                    Some(rows) => *rows[r].add(j),
                    None => 0.0,
                };
                if t.epilogue.residual == ResidualAdd::BeforeActivation {
                    x += residual;
                }
                x = t.epilogue.activation.apply(x);
                if t.epilogue.residual == ResidualAdd::AfterActivation {
                    x += residual;
                }
                *t.c[r].add(j) = x;
            }
        }
    }
}

/// Floats of a packed B of `k × n`.
pub fn packed_b_len(k: usize, n: usize) -> usize {
    n.div_ceil(PANEL) * k * PANEL
}

/// Packs `get(k, j)` for `k < K`, `j < N` into panel16 layout (`out` holds `packed_b_len` floats).
pub(crate) fn pack_panels(k: usize, n: usize, out: &mut [f32], get: impl Fn(usize, usize) -> f32) {
    for p in 0..n.div_ceil(PANEL) {
        let panel = &mut out[p * k * PANEL..(p + 1) * k * PANEL];
        for kk in 0..k {
            for j in 0..PANEL {
                let col = p * PANEL + j;
                panel[kk * PANEL + j] = if col < n { get(kk, col) } else { 0.0 };
            }
        }
    }
}

/// One block of rows through the micro-kernel: every column tile, then every row tile, so a
/// column tile's packed panels stay in cache while all rows of the block pass.
///
/// # Safety
/// Every segment valid for `rows` rows of its `k` floats at stride `lda`; `b` holds the panels
/// of `n` columns at `b_panel_stride`, covering every segment's B rows; `c_row(r)` / `res_row(r)`
/// valid for `n` floats; bias null or valid for `n` floats; the CPU supports `S`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn gemm_rows<S: Simd>(
    rows: usize,
    segments: &[Segment],
    lda: usize,
    b: *const f32,
    b_panel_stride: usize,
    n: usize,
    bias: *const f32,
    epilogue: Epilogue,
    c_row: impl Fn(usize) -> *mut f32,
    res_row: Option<&dyn Fn(usize) -> *const f32>,
) {
    let nr = PANEL * S::GEMM_PANELS;
    let mr = if n <= PANEL {
        S::GEMM_MR_NARROW
    } else {
        S::GEMM_MR
    };
    let mut c = [std::ptr::null_mut(); MAX_MR];
    let mut res = [std::ptr::null(); MAX_MR];
    let mut n0 = 0;
    while n0 < n {
        let cols = nr.min(n - n0);
        let mut r0 = 0;
        while r0 < rows {
            let rr = mr.min(rows - r0);
            // SAFETY: pointer offsets stay inside the ranges the caller vouches for.
            unsafe {
                for i in 0..rr {
                    c[i] = c_row(r0 + i).add(n0);
                    if let Some(res_row) = res_row {
                        res[i] = res_row(r0 + i).add(n0);
                    }
                }
                let tile = Tile {
                    segments,
                    row0: r0,
                    lda,
                    b: b.add((n0 / PANEL) * b_panel_stride),
                    b_panel_stride,
                    rows: rr,
                    cols,
                    c: &c,
                    bias: if bias.is_null() { bias } else { bias.add(n0) },
                    residual: res_row.map(|_| &res),
                    epilogue,
                };
                S::gemm_tile(&tile);
            }
            r0 += rr;
        }
        n0 += cols;
    }
}

/// Layout of the B matrix handed to [`pack_b`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BLayout {
    /// `b[k * N + j]` (K × N row-major; ONNX MatMul's second input).
    RowMajor,
    /// `b[j * K + k]` (N × K row-major; ONNX Gemm with `transB = 1`, fully connected weights).
    Transposed,
}

/// A B operand packed for [`gemm`], owning its data.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedB {
    k: usize,
    n: usize,
    data: AlignedVec,
}

/// A borrowed packed B operand (for example packed at run time into scratch memory).
#[derive(Clone, Copy, Debug)]
pub struct PackedBRef<'a> {
    pub k: usize,
    pub n: usize,
    /// `packed_b_len(k, n)` floats in panel16 layout.
    pub data: &'a [f32],
}

/// Packs B (`k × n`, in `layout`) into `out`, which must hold [`packed_b_len`] floats.
/// Allocation-free, for operands only known at run time.
pub fn pack_b_into(
    b: &[f32],
    k: usize,
    n: usize,
    layout: BLayout,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let need = checked_product("pack_b", "B", &[k, n])?;
    if b.len() != need {
        return Err(bad_operand(
            "pack_b",
            "B",
            format!("holds {} floats, {k} x {n} needs {need}", b.len()),
        ));
    }
    let packed = packed_b_len(k, n);
    if out.len() < packed {
        return Err(bad_operand(
            "pack_b",
            "out",
            format!("holds {} floats, needs {packed}", out.len()),
        ));
    }
    match layout {
        BLayout::RowMajor => pack_panels(k, n, out, |kk, j| b[kk * n + j]),
        BLayout::Transposed => pack_panels(k, n, out, |kk, j| b[j * k + kk]),
    }
    Ok(())
}

/// Packs B (`k × n`, in `layout`) into an owned [`PackedB`].
pub fn pack_b(b: &[f32], k: usize, n: usize, layout: BLayout) -> Result<PackedB, KernelError> {
    checked_product("pack_b", "B", &[k, n, 16])?;
    let mut data = AlignedVec::zeros(packed_b_len(k, n));
    pack_b_into(b, k, n, layout, data.as_mut_slice())?;
    Ok(PackedB { k, n, data })
}

impl PackedB {
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn n(&self) -> usize {
        self.n
    }
    /// The packed floats (what a plan file stores).
    pub fn data(&self) -> &[f32] {
        self.data.as_slice()
    }
    pub fn as_ref(&self) -> PackedBRef<'_> {
        PackedBRef {
            k: self.k,
            n: self.n,
            data: self.data.as_slice(),
        }
    }
    /// Restores a packed B from stored floats, checking the length.
    pub fn from_parts(k: usize, n: usize, data: &[f32]) -> Result<PackedB, KernelError> {
        let need = checked_product("gemm", "packed B", &[n.div_ceil(PANEL), k, PANEL])?;
        if data.len() != need {
            return Err(KernelError::BadPacked {
                op: "gemm",
                reason: format!("{} floats for K={k}, N={n}; expected {need}", data.len()),
            });
        }
        Ok(PackedB {
            k,
            n,
            data: AlignedVec::from_slice(data),
        })
    }
}

/// A read-only row-major matrix view: element `(i, j)` at `data[i * row_stride + j]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
}

/// A writable row-major matrix view.
#[derive(Debug)]
pub struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
}

fn check_matrix(
    operand: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    stride: usize,
) -> Result<(), KernelError> {
    if stride < cols {
        return Err(bad_operand(
            "gemm",
            operand,
            format!("row stride {stride} < {cols} columns"),
        ));
    }
    let need = if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1)
            .checked_mul(stride)
            .and_then(|x| x.checked_add(cols))
            .ok_or(KernelError::Overflow {
                op: "gemm",
                what: operand,
            })?
    };
    if len < need {
        return Err(bad_operand(
            "gemm",
            operand,
            format!("holds {len} floats, {rows} x {cols} at row stride {stride} needs {need}"),
        ));
    }
    Ok(())
}

/// The epilogue of [`gemm`]: `C = act(A·B + bias [+ residual])`, order as in [`crate::Epilogue`].
#[derive(Clone, Copy, Debug)]
pub struct GemmEpilogue<'a> {
    /// One value per column of C.
    pub bias: Option<&'a [f32]>,
    pub activation: Activation,
    /// A matrix shaped like C and where it enters.
    pub residual: Option<(MatRef<'a>, ResidualAdd)>,
}

impl Default for GemmEpilogue<'_> {
    fn default() -> Self {
        GemmEpilogue {
            bias: None,
            activation: Activation::None,
            residual: None,
        }
    }
}

/// Rows per work item of [`gemm`].
const GEMM_ROW_BLOCK: usize = 48;

/// `C (m × n) = epilogue(A (m × k) · B (k × n))` on the context's threads. Allocation-free.
pub fn gemm(
    ctx: &Context,
    a: MatRef<'_>,
    b: PackedBRef<'_>,
    c: MatMut<'_>,
    epilogue: &GemmEpilogue<'_>,
) -> Result<(), KernelError> {
    let (m, k, n) = (a.rows, a.cols, b.n);
    if b.k != k {
        return Err(bad_operand(
            "gemm",
            "B",
            format!("has K={} but A has {k} columns", b.k),
        ));
    }
    if b.data.len() != packed_b_len(k, n) {
        return Err(bad_operand(
            "gemm",
            "B",
            format!("packed length {} != {}", b.data.len(), packed_b_len(k, n)),
        ));
    }
    if c.rows != m || c.cols != n {
        return Err(bad_operand(
            "gemm",
            "C",
            format!("is {} x {}, expected {m} x {n}", c.rows, c.cols),
        ));
    }
    check_matrix("A", a.data.len(), m, k, a.row_stride)?;
    check_matrix("C", c.data.len(), m, n, c.row_stride)?;
    if let Some(bias) = epilogue.bias
        && bias.len() != n
    {
        return Err(bad_operand(
            "gemm",
            "bias",
            format!("has {} values for {n} columns", bias.len()),
        ));
    }
    let mut ep = Epilogue::new(epilogue.activation, ResidualAdd::None);
    ep.validate("gemm")?;
    let mut residual: Option<MatRef> = None;
    if let Some((r, mode)) = epilogue.residual {
        if r.rows != m || r.cols != n {
            return Err(bad_operand(
                "gemm",
                "residual",
                format!("is {} x {}, expected {m} x {n}", r.rows, r.cols),
            ));
        }
        check_matrix("residual", r.data.len(), m, n, r.row_stride)?;
        ep.residual = mode;
        if mode != ResidualAdd::None {
            residual = Some(r);
        }
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // An empty sum: every element is the epilogue of zero.
        for i in 0..m {
            for j in 0..n {
                let bias = epilogue.bias.map_or(0.0, |b| b[j]);
                let r = residual.map_or(0.0, |r| r.data[i * r.row_stride + j]);
                c.data[i * c.row_stride + j] = apply_scalar(0.0 + bias, r, ep);
            }
        }
        return Ok(());
    }

    let row_blocks = m.div_ceil(GEMM_ROW_BLOCK);
    let threads = ctx.threads();
    // Few rows (a fully connected layer): split the columns too, in multiples of 64.
    let col_chunk = if row_blocks >= 2 * threads {
        n
    } else {
        let chunks = (2 * threads).div_ceil(row_blocks);
        n.div_ceil(chunks).div_ceil(64) * 64
    };
    let col_chunks = n.div_ceil(col_chunk);
    let c_ptr = SendPtr(c.data.as_mut_ptr());
    let (ldc, lda) = (c.row_stride, a.row_stride);
    let bias_ptr = epilogue.bias.map_or(std::ptr::null(), |b| b.as_ptr());
    let bias_ptr = SendPtr(bias_ptr as *mut f32);
    let res = residual.map(|r| (SendPtr(r.data.as_ptr() as *mut f32), r.row_stride));
    let isa = ctx.isa();
    let job = |item: usize, _scratch: &mut [f32]| {
        let (rb, cc) = (item / col_chunks, item % col_chunks);
        let r0 = rb * GEMM_ROW_BLOCK;
        let rows = GEMM_ROW_BLOCK.min(m - r0);
        let c0 = cc * col_chunk;
        let cols = col_chunk.min(n - c0);
        let block = GemmBlock {
            rows,
            k,
            // SAFETY (all offsets): row r0.. and column c0.. are inside the validated views.
            a: unsafe { a.data.as_ptr().add(r0 * lda) },
            lda,
            b: unsafe { b.data.as_ptr().add((c0 / PANEL) * k * PANEL) },
            b_panel_stride: k * PANEL,
            n: cols,
            bias: if bias_ptr.get().is_null() {
                std::ptr::null()
            } else {
                unsafe { bias_ptr.get().add(c0) }
            },
            epilogue: ep,
            c: unsafe { c_ptr.get().add(r0 * ldc + c0) },
            ldc,
            residual: res.map(|(p, ld)| (unsafe { p.get().add(r0 * ld + c0) } as *const f32, ld)),
        };
        // SAFETY: items cover disjoint (row block, column chunk) rectangles of C, so no two
        // threads write the same element; every pointer was derived from validated views.
        unsafe { dispatch(isa, block) };
    };
    let threads = ctx.threads_for((m * n) as u64 * k as u64);
    for_each_item(
        ctx.pool(),
        threads,
        row_blocks * col_chunks,
        &mut [],
        0,
        &job,
    );
    Ok(())
}

pub(crate) fn apply_scalar(x: f32, residual: f32, ep: Epilogue) -> f32 {
    let mut x = x;
    if ep.residual == ResidualAdd::BeforeActivation {
        x += residual;
    }
    x = ep.activation.apply(x);
    if ep.residual == ResidualAdd::AfterActivation {
        x += residual;
    }
    x
}

/// A rectangle of C computed by one thread, with uniformly strided rows.
pub(crate) struct GemmBlock {
    pub rows: usize,
    pub k: usize,
    pub a: *const f32,
    pub lda: usize,
    pub b: *const f32,
    pub b_panel_stride: usize,
    pub n: usize,
    pub bias: *const f32,
    pub epilogue: Epilogue,
    pub c: *mut f32,
    pub ldc: usize,
    pub residual: Option<(*const f32, usize)>,
}

impl crate::SimdKernel for GemmBlock {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let (c, ldc) = (self.c, self.ldc);
        // SAFETY: the creator of the block guarantees the pointer ranges.
        unsafe {
            match self.residual {
                Some((r, ldr)) => gemm_rows::<S>(
                    self.rows,
                    &[Segment {
                        a: self.a,
                        k: self.k,
                        b_row: 0,
                    }],
                    self.lda,
                    self.b,
                    self.b_panel_stride,
                    self.n,
                    self.bias,
                    self.epilogue,
                    |i| c.add(i * ldc),
                    Some(&|i| r.add(i * ldr)),
                ),
                None => gemm_rows::<S>(
                    self.rows,
                    &[Segment {
                        a: self.a,
                        k: self.k,
                        b_row: 0,
                    }],
                    self.lda,
                    self.b,
                    self.b_panel_stride,
                    self.n,
                    self.bias,
                    self.epilogue,
                    |i| c.add(i * ldc),
                    None,
                ),
            }
        }
    }
}
