//! Winograd convolution F(m×m, 3×3) for 3×3 / stride 1 / dilation 1 / groups 1, m = 4 or 2.
//!
//! Output tiles of m×m pixels read (m+2)×(m+2) input windows. With α = m + 2:
//! `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`, and the element-wise products summed over input channels
//! become α² independent GEMMs `M_ξ = V_ξ · U_ξ` (`V_ξ`: tiles × C_in, `U_ξ`: C_in × C_out).
//!
//! F(4×4) uses the interpolation points 0, ±1, ±2 (Lavin & Gray); F(2×2) uses 0, ±1. The
//! transformed weights `U = G g Gᵀ` are computed in f64 and rounded once.
//!
//! One work item is a block of `tile_block` consecutive tiles (raster order over batch, tile rows,
//! tile columns): input transform into thread scratch `V[ξ][tile][c]`, α² GEMMs into
//! `M[ξ][tile][k]`, output transform with the fused epilogue straight into the output.

use super::{Conv2dSpec, ConvIo};
use crate::epilogue::{Epilogue, finish};
use crate::gemm::{PANEL, Segment, gemm_rows, pack_panels, packed_b_len};
use crate::simd::Simd;
use crate::threads::{SendPtr, for_each_item};
use crate::{Context, SimdKernel, dispatch};

/// Bᵀ and G of F(4×4, 3×3) (Bᵀ is applied in factored form by `F4::bt`; the unit test checks
/// the two agree).
#[cfg(test)]
const BT4: [[f64; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
const G4: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];
/// G of F(2×2, 3×3).
const G2: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// Bytes of V and M blocks a work item aims to keep in L2.
const BLOCK_BYTES: usize = 512 * 1024;
/// Transformed weights larger than this are read once per image (phased schedule) instead of once
/// per tile block: beyond a few MiB they no longer stay in the last-level cache between blocks.
const PHASED_WEIGHT_BYTES: usize = 4 << 20;
/// Tiles per work item of the phased schedule's transform steps.
const PHASED_TILE_BLOCK: usize = 8;
/// Output channels per GEMM work item of the phased schedule.
const PHASED_COL_CHUNK: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WinogradPlan {
    /// Output tile size m (4 or 2).
    pub m: usize,
    /// Tiles per image `[rows, cols]`.
    pub tiles: [usize; 2],
    /// Tiles per work item.
    pub tile_block: usize,
    /// Row strides (floats) of V and M in scratch: channels rounded up to 16.
    pub cin_p: usize,
    pub cout_p: usize,
    pub output_size: [usize; 2],
    pub cin: usize,
    pub cout: usize,
    pub schedule: Schedule,
}

/// How the three Winograd steps are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// Each work item runs a block of tiles through all three steps in its own scratch; the
    /// transformed weights are re-read by every block (best when they stay in cache).
    Fused,
    /// Per image: all input transforms, then the α² GEMMs split by (ξ, 64 output channels) so
    /// every transformed weight is read from memory once, then all output transforms (best when
    /// the transformed weights exceed the caches: wide, small-spatial layers).
    Phased,
}

impl WinogradPlan {
    pub fn new(spec: &Conv2dSpec, output_size: [usize; 2], m: usize) -> WinogradPlan {
        let alpha2 = (m + 2) * (m + 2);
        let tiles = [output_size[0].div_ceil(m), output_size[1].div_ceil(m)];
        let cin_p = spec.in_channels.div_ceil(PANEL) * PANEL;
        let cout_p = spec.out_channels.div_ceil(PANEL) * PANEL;
        let per_tile = alpha2 * (cin_p + cout_p) * 4;
        let u_bytes = alpha2 * spec.in_channels * spec.out_channels * 4;
        let mut tile_block = (BLOCK_BYTES / per_tile).max(1);
        if u_bytes > BLOCK_BYTES {
            // Each block streams all of U once: keep blocks tall enough that the GEMMs, not the
            // weight traffic, set the pace.
            tile_block = tile_block.max(32);
        }
        let per_image = tiles[0] * tiles[1];
        // At least four blocks per image so two to four threads share even a small layer.
        tile_block = tile_block.min(per_image.div_ceil(4)).clamp(1, 240);
        // Whole micro-tiles (6 rows on AVX-512/AVX2/NEON).
        tile_block = tile_block.div_ceil(6) * 6;
        let schedule = if u_bytes > PHASED_WEIGHT_BYTES {
            Schedule::Phased
        } else {
            Schedule::Fused
        };
        WinogradPlan {
            m,
            tiles,
            tile_block,
            cin_p,
            cout_p,
            output_size,
            cin: spec.in_channels,
            cout: spec.out_channels,
            schedule,
        }
    }

    fn alpha(&self) -> usize {
        self.m + 2
    }

    /// Scratch floats for `threads` threads: per-thread blocks (fused) or one image's V and M
    /// (phased).
    pub fn scratch_len(&self, threads: usize) -> usize {
        let a2 = self.alpha() * self.alpha();
        match self.schedule {
            Schedule::Fused => threads * a2 * self.tile_block * (self.cin_p + self.cout_p),
            Schedule::Phased => a2 * self.tiles[0] * self.tiles[1] * (self.cin_p + self.cout_p),
        }
    }

    /// Packs `U_ξ = G g Gᵀ` for every ξ as panel16 matrices (C_in × C_out), ξ-major.
    pub fn pack_weights(&self, spec: &Conv2dSpec, weights: &[f32], out: &mut [f32]) {
        let alpha = self.alpha();
        let a2 = alpha * alpha;
        let g_rows: Vec<[f64; 3]> = if self.m == 4 {
            G4.to_vec()
        } else {
            G2.to_vec()
        };
        let (cin, cout) = (spec.in_channels, spec.out_channels);
        // u[(co * cin + ci) * a2 + ξ]
        let mut u = vec![0f32; cout * cin * a2];
        for co in 0..cout {
            for ci in 0..cin {
                let g = &weights[(co * cin + ci) * 9..(co * cin + ci) * 9 + 9];
                // t = G g  (alpha × 3), then U = t Gᵀ (alpha × alpha).
                let mut t = [[0f64; 3]; 6];
                for (i, gi) in g_rows.iter().enumerate() {
                    for j in 0..3 {
                        t[i][j] = (0..3).map(|k| gi[k] * g[k * 3 + j] as f64).sum();
                    }
                }
                let base = (co * cin + ci) * a2;
                for i in 0..alpha {
                    for (j, gj) in g_rows.iter().enumerate() {
                        u[base + i * alpha + j] =
                            (0..3).map(|k| t[i][k] * gj[k]).sum::<f64>() as f32;
                    }
                }
            }
        }
        let stride = packed_b_len(cin, cout);
        for xi in 0..a2 {
            pack_panels(
                cin,
                cout,
                &mut out[xi * stride..(xi + 1) * stride],
                |ci, co| u[(co * cin + ci) * a2 + xi],
            );
        }
    }

    pub fn execute(
        &self,
        ctx: &Context,
        spec: &Conv2dSpec,
        packed: &[f32],
        mut io: ConvIo<'_>,
        scratch: &mut [f32],
    ) {
        let (out, residual) = io.output_and_residual();
        let io_ptrs = IoPtrs {
            input: io.input.data.as_ptr(),
            in_dims: [io.input.dims[1], io.input.dims[2]],
            in_ps: io.input.pixel_stride,
            pad: [spec.padding.top, spec.padding.left],
            output: out.get(),
            out_ps: io.output.pixel_stride,
            residual: residual.map(|(p, ps)| (p.get() as *const f32, ps)),
            bias: io.bias.as_ptr(),
            epilogue: spec.epilogue,
        };
        let n = io.input.dims[0];
        match self.schedule {
            Schedule::Fused => self.execute_fused(ctx, io.threads, n, &io_ptrs, packed, scratch),
            Schedule::Phased => self.execute_phased(ctx, io.threads, n, &io_ptrs, packed, scratch),
        }
    }

    fn execute_fused(
        &self,
        ctx: &Context,
        threads: usize,
        n: usize,
        io: &IoPtrs,
        packed: &[f32],
        scratch: &mut [f32],
    ) {
        let total = n * self.tiles[0] * self.tiles[1];
        let items = total.div_ceil(self.tile_block);
        let isa = ctx.isa();
        let a2 = self.alpha() * self.alpha();
        let per_thread = a2 * self.tile_block * (self.cin_p + self.cout_p);
        let job = |item: usize, buf: &mut [f32]| {
            let t0 = item * self.tile_block;
            let v = TileBuf {
                base: buf.as_mut_ptr(),
                xi_stride: self.tile_block * self.cin_p,
                row_stride: self.cin_p,
            };
            // SAFETY: the thread's scratch holds V (a2 * tile_block * cin_p) then M.
            let m = TileBuf {
                base: unsafe { buf.as_mut_ptr().add(a2 * self.tile_block * self.cin_p) },
                xi_stride: self.tile_block * self.cout_p,
                row_stride: self.cout_p,
            };
            let block = FusedBlock {
                tiles: TileRange {
                    plan: self,
                    t0,
                    len: self.tile_block.min(total - t0),
                    row0: 0,
                },
                io,
                v,
                m,
                packed: packed.as_ptr(),
            };
            // SAFETY: items own disjoint tiles, hence disjoint output pixels; V and M live in the
            // thread's own scratch; every other pointer comes from a validated view.
            unsafe { dispatch(isa, block) };
        };
        for_each_item(ctx.pool(), threads, items, scratch, per_thread, &job);
    }

    fn execute_phased(
        &self,
        ctx: &Context,
        threads: usize,
        n: usize,
        io: &IoPtrs,
        packed: &[f32],
        scratch: &mut [f32],
    ) {
        let per_image = self.tiles[0] * self.tiles[1];
        let a2 = self.alpha() * self.alpha();
        let isa = ctx.isa();
        let base = SendPtr(scratch.as_mut_ptr());
        let v = TileBuf {
            base: base.get(),
            xi_stride: per_image * self.cin_p,
            row_stride: self.cin_p,
        };
        // SAFETY: scratch holds V (a2 * per_image * cin_p) then M (scratch_len).
        let m = TileBuf {
            base: unsafe { base.get().add(a2 * per_image * self.cin_p) },
            xi_stride: per_image * self.cout_p,
            row_stride: self.cout_p,
        };
        let (v, m) = (SendTileBuf(v), SendTileBuf(m));
        let blocks = per_image.div_ceil(PHASED_TILE_BLOCK);
        let chunks = self.cout.div_ceil(PHASED_COL_CHUNK);
        let u_stride = packed_b_len(self.cin, self.cout);
        for img in 0..n {
            let range = |block: usize| {
                let row0 = block * PHASED_TILE_BLOCK;
                TileRange {
                    plan: self,
                    t0: img * per_image + row0,
                    len: PHASED_TILE_BLOCK.min(per_image - row0),
                    row0,
                }
            };
            // 1. Input transforms; blocks write disjoint tile rows of V.
            for_each_item(ctx.pool(), threads, blocks, &mut [], 0, &|block, _| {
                let k = InputStep {
                    tiles: range(block),
                    io,
                    v: v.get(),
                };
                // SAFETY: disjoint V rows per block; input reads are bounds-checked.
                unsafe { dispatch(isa, k) };
            });
            // 2. GEMMs; items write disjoint (ξ, column chunk) blocks of M and only read V.
            for_each_item(ctx.pool(), threads, a2 * chunks, &mut [], 0, &|item, _| {
                let (xi, chunk) = (item / chunks, item % chunks);
                let col0 = chunk * PHASED_COL_CHUNK;
                let (v, m) = (v.get(), m.get());
                // SAFETY (offsets): inside V_ξ, U_ξ (panel col0 / 16) and M_ξ.
                let block = unsafe {
                    crate::gemm::GemmBlock {
                        rows: per_image,
                        k: self.cin,
                        a: v.base.add(xi * v.xi_stride),
                        lda: self.cin_p,
                        b: packed
                            .as_ptr()
                            .add(xi * u_stride + (col0 / PANEL) * self.cin * PANEL),
                        b_panel_stride: self.cin * PANEL,
                        n: PHASED_COL_CHUNK.min(self.cout - col0),
                        bias: std::ptr::null(),
                        epilogue: Epilogue::default(),
                        c: m.base.add(xi * m.xi_stride + col0),
                        ldc: self.cout_p,
                        residual: None,
                    }
                };
                // SAFETY: see above.
                unsafe { dispatch(isa, block) };
            });
            // 3. Output transforms; blocks write disjoint output tiles.
            for_each_item(ctx.pool(), threads, blocks, &mut [], 0, &|block, _| {
                let k = OutputStep {
                    tiles: range(block),
                    io,
                    m: m.get(),
                };
                // SAFETY: disjoint output tiles per block; M was completed by step 2.
                unsafe { dispatch(isa, k) };
            });
        }
    }
}

/// Pointers and geometry of one execution's operands.
struct IoPtrs {
    input: *const f32,
    in_dims: [usize; 2],
    in_ps: usize,
    pad: [usize; 2],
    output: *mut f32,
    out_ps: usize,
    residual: Option<(*const f32, usize)>,
    bias: *const f32,
    epilogue: Epilogue,
}

// SAFETY: shared read-only between the threads of one execution; writes through `output` go to
// disjoint tiles (see each use).
unsafe impl Sync for IoPtrs {}

/// Transformed tiles in memory: value ξ of buffer row r, channel c at
/// `base + ξ * xi_stride + r * row_stride + c`.
#[derive(Clone, Copy)]
struct TileBuf {
    base: *mut f32,
    xi_stride: usize,
    row_stride: usize,
}

#[derive(Clone, Copy)]
struct SendTileBuf(TileBuf);
// SAFETY: shared by the threads of one phase; each writes disjoint rows/columns (see uses).
unsafe impl Sync for SendTileBuf {}
unsafe impl Send for SendTileBuf {}

impl SendTileBuf {
    /// Takes the whole wrapper into a closure (a field path would capture the raw pointer alone).
    fn get(self) -> TileBuf {
        self.0
    }
}

/// Tiles `t0..t0 + len` (global raster index over batch, tile rows, tile columns), stored in
/// buffer rows `row0..row0 + len`.
struct TileRange<'p> {
    plan: &'p WinogradPlan,
    t0: usize,
    len: usize,
    row0: usize,
}

struct FusedBlock<'p> {
    tiles: TileRange<'p>,
    io: &'p IoPtrs,
    v: TileBuf,
    m: TileBuf,
    packed: *const f32,
}

struct InputStep<'p> {
    tiles: TileRange<'p>,
    io: &'p IoPtrs,
    v: TileBuf,
}

struct OutputStep<'p> {
    tiles: TileRange<'p>,
    io: &'p IoPtrs,
    m: TileBuf,
}

/// The 1-D transforms of one Winograd variant, on arrays of six vectors (F(2×2) uses four).
trait Variant {
    const M: usize;
    const A: usize;
    unsafe fn bt<S: Simd>(d: &[S::V; 6]) -> [S::V; 6];
    unsafe fn at<S: Simd>(m: &[S::V; 6]) -> [S::V; 6];
}

struct F4;
struct F2;

impl Variant for F4 {
    const M: usize = 4;
    const A: usize = 6;

    /// Bᵀ of F(4, 3) on six vectors.
    #[inline(always)]
    unsafe fn bt<S: Simd>(d: &[S::V; 6]) -> [S::V; 6] {
        // SAFETY: arithmetic only.
        unsafe {
            let four = S::splat(4.0);
            let m4 = S::splat(-4.0);
            let m5 = S::splat(-5.0);
            let a = S::fmadd(m4, d[2], d[4]);
            let b = S::fmadd(m4, d[1], d[3]);
            let c = S::sub(d[4], d[2]);
            let e = S::add(S::sub(d[3], d[1]), S::sub(d[3], d[1]));
            [
                S::fmadd(four, d[0], S::fmadd(m5, d[2], d[4])),
                S::add(a, b),
                S::sub(a, b),
                S::add(c, e),
                S::sub(c, e),
                S::fmadd(four, d[1], S::fmadd(m5, d[3], d[5])),
            ]
        }
    }

    /// Aᵀ of F(4, 3): six vectors to four.
    #[inline(always)]
    unsafe fn at<S: Simd>(m: &[S::V; 6]) -> [S::V; 6] {
        // SAFETY: arithmetic only.
        unsafe {
            let s12 = S::add(m[1], m[2]);
            let d12 = S::sub(m[1], m[2]);
            let s34 = S::add(m[3], m[4]);
            let d34 = S::sub(m[3], m[4]);
            [
                S::add(S::add(m[0], s12), s34),
                S::fmadd(S::splat(2.0), d34, d12),
                S::fmadd(S::splat(4.0), s34, s12),
                S::add(S::fmadd(S::splat(8.0), d34, d12), m[5]),
                S::zero(),
                S::zero(),
            ]
        }
    }
}

impl Variant for F2 {
    const M: usize = 2;
    const A: usize = 4;

    /// Bᵀ of F(2, 3) on the first four vectors.
    #[inline(always)]
    unsafe fn bt<S: Simd>(d: &[S::V; 6]) -> [S::V; 6] {
        // SAFETY: arithmetic only.
        unsafe {
            let z = S::zero();
            [
                S::sub(d[0], d[2]),
                S::add(d[1], d[2]),
                S::sub(d[2], d[1]),
                S::sub(d[1], d[3]),
                z,
                z,
            ]
        }
    }

    /// Aᵀ of F(2, 3): four vectors to two.
    #[inline(always)]
    unsafe fn at<S: Simd>(m: &[S::V; 6]) -> [S::V; 6] {
        // SAFETY: arithmetic only.
        unsafe {
            let z = S::zero();
            [
                S::add(S::add(m[0], m[1]), m[2]),
                S::sub(S::sub(m[1], m[2]), m[3]),
                z,
                z,
                z,
                z,
            ]
        }
    }
}

impl SimdKernel for FusedBlock<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let p = self.tiles.plan;
        let a2 = (p.m + 2) * (p.m + 2);
        let u_stride = packed_b_len(p.cin, p.cout);
        // SAFETY: forwarded from `execute_fused`.
        unsafe {
            if p.m == 4 {
                input_transform::<S, F4>(&self.tiles, self.io, self.v);
            } else {
                input_transform::<S, F2>(&self.tiles, self.io, self.v);
            }
            for xi in 0..a2 {
                let m_xi = self.m.base.add(xi * self.m.xi_stride);
                let ldc = self.m.row_stride;
                let seg = Segment {
                    a: self.v.base.add(xi * self.v.xi_stride),
                    k: p.cin,
                    b_row: 0,
                };
                gemm_rows::<S>(
                    self.tiles.len,
                    &[seg],
                    self.v.row_stride,
                    self.packed.add(xi * u_stride),
                    p.cin * PANEL,
                    p.cout,
                    std::ptr::null(),
                    Epilogue::default(),
                    |r| m_xi.add(r * ldc),
                    None,
                );
            }
            if p.m == 4 {
                output_transform::<S, F4>(&self.tiles, self.io, self.m);
            } else {
                output_transform::<S, F2>(&self.tiles, self.io, self.m);
            }
        }
    }
}

impl SimdKernel for InputStep<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        // SAFETY: forwarded from `execute_phased`.
        unsafe {
            if self.tiles.plan.m == 4 {
                input_transform::<S, F4>(&self.tiles, self.io, self.v)
            } else {
                input_transform::<S, F2>(&self.tiles, self.io, self.v)
            }
        }
    }
}

impl SimdKernel for OutputStep<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        // SAFETY: forwarded from `execute_phased`.
        unsafe {
            if self.tiles.plan.m == 4 {
                output_transform::<S, F4>(&self.tiles, self.io, self.m)
            } else {
                output_transform::<S, F2>(&self.tiles, self.io, self.m)
            }
        }
    }
}

/// Image, first output row and first output column of global tile `t`.
#[inline(always)]
fn tile_origin(p: &WinogradPlan, t: usize) -> (usize, usize, usize) {
    let per_image = p.tiles[0] * p.tiles[1];
    let (img, r) = (t / per_image, t % per_image);
    (img, (r / p.tiles[1]) * p.m, (r % p.tiles[1]) * p.m)
}

/// V = Bᵀ d B for every tile of the range. Rows of the window are transformed first
/// (t = d B), then columns; every temporary is written before it is read.
///
/// # Safety
/// `v` must hold rows `row0..row0 + len` with `cin_p` floats each for all α² values of ξ; the
/// CPU supports `S`.
#[inline(always)]
unsafe fn input_transform<S: Simd, W: Variant>(tiles: &TileRange, io: &IoPtrs, v: TileBuf) {
    const { assert!(W::A <= 6) };
    let alpha = W::A;
    let p = tiles.plan;
    let [in_h, in_w] = io.in_dims;
    for i in 0..tiles.len {
        let (img, oy, ox) = tile_origin(p, tiles.t0 + i);
        let iy0 = oy as isize - io.pad[0] as isize;
        let ix0 = ox as isize - io.pad[1] as isize;
        let interior = iy0 >= 0
            && ix0 >= 0
            && iy0 + alpha as isize <= in_h as isize
            && ix0 + alpha as isize <= in_w as isize;
        let mut col_ok = [false; 6];
        for b in 0..alpha {
            col_ok[b] = ix0 + (b as isize) >= 0 && ix0 + (b as isize) < in_w as isize;
        }
        let row = v.base.wrapping_add((tiles.row0 + i) * v.row_stride);
        let mut c = 0;
        while c < p.cin {
            let n = (p.cin - c).min(S::LANES);
            // SAFETY: loads only touch in-bounds pixels and channels c..c + n <= cin; stores go
            // to V rows inside the buffer (c + LANES <= cin_p).
            unsafe {
                let mut t = [[S::zero(); 6]; 6];
                for a in 0..alpha {
                    let iy = iy0 + a as isize;
                    let mut d = [S::zero(); 6];
                    if interior {
                        let px0 = (img * in_h + iy as usize) * in_w + ix0 as usize;
                        let src = io.input.add(px0 * io.in_ps + c);
                        for b in 0..alpha {
                            d[b] = S::load_n(src.add(b * io.in_ps), n);
                        }
                    } else if iy >= 0 && iy < in_h as isize {
                        let line = (img * in_h + iy as usize) * in_w;
                        for b in 0..alpha {
                            if col_ok[b] {
                                let px = line + (ix0 + b as isize) as usize;
                                d[b] = S::load_n(io.input.add(px * io.in_ps + c), n);
                            }
                        }
                    }
                    t[a] = W::bt::<S>(&d);
                }
                for b in 0..alpha {
                    let col = [t[0][b], t[1][b], t[2][b], t[3][b], t[4][b], t[5][b]];
                    let vals = W::bt::<S>(&col);
                    for a in 0..alpha {
                        S::store(row.add((a * alpha + b) * v.xi_stride + c), vals[a]);
                    }
                }
            }
            c += S::LANES;
        }
    }
}

/// Y = Aᵀ M A with the epilogue, stored into the output, for every tile of the range.
///
/// # Safety
/// `m` holds the GEMM results of the range's rows; output / residual pointers are valid for
/// the tiles' pixels; the CPU supports `S`.
#[inline(always)]
unsafe fn output_transform<S: Simd, W: Variant>(tiles: &TileRange, io: &IoPtrs, m: TileBuf) {
    const { assert!(W::A <= 6) };
    let (m_size, alpha) = (W::M, W::A);
    let p = tiles.plan;
    let [out_h, out_w] = p.output_size;
    for i in 0..tiles.len {
        let (img, oy, ox) = tile_origin(p, tiles.t0 + i);
        let rows = (out_h - oy).min(m_size);
        let cols = (out_w - ox).min(m_size);
        let row = m.base.wrapping_add((tiles.row0 + i) * m.row_stride);
        let mut c = 0;
        while c < p.cout {
            let n = (p.cout - c).min(S::LANES);
            // SAFETY: M rows are inside the buffer (c + LANES <= cout_p); output and residual
            // pixels are inside the tile's valid rows/cols, channels c..c + n <= cout.
            unsafe {
                let mut t = [[S::zero(); 6]; 6];
                for a in 0..alpha {
                    let mut vals = [S::zero(); 6];
                    for b in 0..alpha {
                        vals[b] = S::load(row.add((a * alpha + b) * m.xi_stride + c));
                    }
                    t[a] = W::at::<S>(&vals);
                }
                let bias = S::load_n(io.bias.add(c), n);
                for b in 0..cols {
                    let col = [t[0][b], t[1][b], t[2][b], t[3][b], t[4][b], t[5][b]];
                    let y = W::at::<S>(&col);
                    for a in 0..rows {
                        let px = (img * out_h + oy + a) * out_w + ox + b;
                        let res = io.residual.map(|(r, ps)| S::load_n(r.add(px * ps + c), n));
                        let val = finish::<S>(y[a], bias, res, io.epilogue);
                        S::store_n(io.output.add(px * io.out_ps + c), val, n);
                    }
                }
            }
            c += S::LANES;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::scalar::Scalar;

    /// Aᵀ of F(4×4, 3×3), for the check below.
    const AT4: [[f64; 6]; 4] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ];

    fn unit(i: usize) -> [f32; 6] {
        let mut v = [0.0; 6];
        v[i] = 1.0;
        v
    }

    #[test]
    fn factored_transforms_match_the_matrices() {
        for col in 0..6 {
            // SAFETY: Scalar runs everywhere.
            let bt = unsafe { F4::bt::<Scalar>(&unit(col)) };
            for row in 0..6 {
                assert_eq!(bt[row] as f64, BT4[row][col], "Bt[{row}][{col}]");
            }
            let at = unsafe { F4::at::<Scalar>(&unit(col)) };
            for row in 0..4 {
                assert_eq!(at[row] as f64, AT4[row][col], "At[{row}][{col}]");
            }
        }
    }

    /// The 1-D identity Aᵀ[(G g) ⊙ (Bᵀ d)] = correlation(d, g), checked for both variants.
    #[test]
    fn one_dimensional_winograd_identity_holds() {
        let d = [0.3f32, -1.2, 2.5, 0.7, -0.4, 1.9];
        let g = [0.5f64, -0.25, 1.5];
        for (m, alpha) in [(4usize, 6usize), (2, 4)] {
            let g_rows: Vec<[f64; 3]> = if m == 4 { G4.to_vec() } else { G2.to_vec() };
            let gg: Vec<f32> = g_rows
                .iter()
                .map(|r| (0..3).map(|k| r[k] * g[k]).sum::<f64>() as f32)
                .collect();
            // SAFETY: Scalar runs everywhere.
            let v = unsafe {
                if m == 4 {
                    F4::bt::<Scalar>(&d)
                } else {
                    F2::bt::<Scalar>(&d)
                }
            };
            let mut prod = [0f32; 6];
            for i in 0..alpha {
                prod[i] = v[i] * gg[i];
            }
            let y = unsafe {
                if m == 4 {
                    F4::at::<Scalar>(&prod)
                } else {
                    F2::at::<Scalar>(&prod)
                }
            };
            for (i, &yi) in y.iter().enumerate().take(m) {
                let want: f64 = (0..3).map(|k| d[i + k] as f64 * g[k]).sum();
                assert!(
                    (yi as f64 - want).abs() < 1e-5,
                    "m={m} y[{i}] = {yi}, want {want}"
                );
            }
        }
    }
}
