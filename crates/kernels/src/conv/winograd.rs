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
use crate::gemm::{PANEL, gemm_rows, pack_panels, packed_b_len};
use crate::simd::Simd;
use crate::threads::for_each_item;
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
        WinogradPlan {
            m,
            tiles,
            tile_block,
            cin_p,
            cout_p,
            output_size,
            cin: spec.in_channels,
            cout: spec.out_channels,
        }
    }

    fn alpha(&self) -> usize {
        self.m + 2
    }

    pub fn scratch_per_thread(&self) -> usize {
        let a2 = self.alpha() * self.alpha();
        a2 * self.tile_block * (self.cin_p + self.cout_p)
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
        let n = io.input.dims[0];
        let per_image = self.tiles[0] * self.tiles[1];
        let total = n * per_image;
        let items = total.div_ceil(self.tile_block);
        let isa = ctx.isa();
        let (out, residual) = io.output_and_residual();
        let job = |item: usize, buf: &mut [f32]| {
            let t0 = item * self.tile_block;
            let block = WinogradBlock {
                plan: self,
                t0,
                len: self.tile_block.min(total - t0),
                input: io.input.data.as_ptr(),
                in_dims: [io.input.dims[1], io.input.dims[2]],
                in_ps: io.input.pixel_stride,
                pad: [spec.padding.top, spec.padding.left],
                output: out.get(),
                out_ps: io.output.pixel_stride,
                residual: residual.map(|(p, ps)| (p.get() as *const f32, ps)),
                bias: io.bias.as_ptr(),
                packed: packed.as_ptr(),
                scratch: buf.as_mut_ptr(),
                epilogue: spec.epilogue,
            };
            // SAFETY: items own disjoint tiles, hence disjoint output pixels; every pointer
            // comes from a validated view or the thread's own scratch.
            unsafe { dispatch(isa, block) };
        };
        for_each_item(ctx.pool(), items, scratch, self.scratch_per_thread(), &job);
    }
}

struct WinogradBlock<'p> {
    plan: &'p WinogradPlan,
    t0: usize,
    len: usize,
    input: *const f32,
    in_dims: [usize; 2],
    in_ps: usize,
    pad: [usize; 2],
    output: *mut f32,
    out_ps: usize,
    residual: Option<(*const f32, usize)>,
    bias: *const f32,
    packed: *const f32,
    scratch: *mut f32,
    epilogue: Epilogue,
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

impl SimdKernel for WinogradBlock<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        // SAFETY: forwarded from `execute`.
        unsafe {
            if self.plan.m == 4 {
                self.run_variant::<S, F4>()
            } else {
                self.run_variant::<S, F2>()
            }
        }
    }
}

impl WinogradBlock<'_> {
    #[inline(always)]
    unsafe fn run_variant<S: Simd, W: Variant>(&self) {
        const { assert!(W::A <= 6) };
        let (m_size, alpha) = (W::M, W::A);
        let p = self.plan;
        let a2 = alpha * alpha;
        let tb = p.tile_block;
        let v_base = self.scratch;
        // SAFETY: scratch holds a2 * tb * (cin_p + cout_p) floats (scratch_per_thread).
        let m_base = unsafe { self.scratch.add(a2 * tb * p.cin_p) };
        let [in_h, in_w] = self.in_dims;
        let [out_h, out_w] = p.output_size;
        let per_image = p.tiles[0] * p.tiles[1];
        let tile_origin = |t: usize| -> (usize, usize, usize) {
            let img = t / per_image;
            let r = t % per_image;
            (img, (r / p.tiles[1]) * m_size, (r % p.tiles[1]) * m_size)
        };

        // 1. Input transform: V[ξ][i][c] for every tile i of the block. Rows of the window are
        // transformed first (t = d B), then columns (V = Bᵀ t); every temporary is written before
        // it is read, so nothing needs zeroing.
        for i in 0..self.len {
            let (img, oy, ox) = tile_origin(self.t0 + i);
            let iy0 = oy as isize - self.pad[0] as isize;
            let ix0 = ox as isize - self.pad[1] as isize;
            let interior = iy0 >= 0
                && ix0 >= 0
                && iy0 + alpha as isize <= in_h as isize
                && ix0 + alpha as isize <= in_w as isize;
            let mut col_ok = [false; 6];
            for b in 0..alpha {
                col_ok[b] = ix0 + (b as isize) >= 0 && ix0 + (b as isize) < in_w as isize;
            }
            let mut c = 0;
            while c < p.cin {
                let n = (p.cin - c).min(S::LANES);
                // SAFETY: loads only touch in-bounds pixels and channels c..c + n <= cin; stores
                // go to V rows inside scratch (c + LANES <= cin_p).
                unsafe {
                    let mut t = [[S::zero(); 6]; 6];
                    for a in 0..alpha {
                        let iy = iy0 + a as isize;
                        let mut d = [S::zero(); 6];
                        if interior {
                            let px0 = (img * in_h + iy as usize) * in_w + ix0 as usize;
                            let src = self.input.add(px0 * self.in_ps + c);
                            for b in 0..alpha {
                                d[b] = S::load_n(src.add(b * self.in_ps), n);
                            }
                        } else if iy >= 0 && iy < in_h as isize {
                            let line = (img * in_h + iy as usize) * in_w;
                            for b in 0..alpha {
                                if col_ok[b] {
                                    let px = line + (ix0 + b as isize) as usize;
                                    d[b] = S::load_n(self.input.add(px * self.in_ps + c), n);
                                }
                            }
                        }
                        t[a] = W::bt::<S>(&d);
                    }
                    for b in 0..alpha {
                        let col = [t[0][b], t[1][b], t[2][b], t[3][b], t[4][b], t[5][b]];
                        let v = W::bt::<S>(&col);
                        for a in 0..alpha {
                            let xi = a * alpha + b;
                            S::store(v_base.add((xi * tb + i) * p.cin_p + c), v[a]);
                        }
                    }
                }
                c += S::LANES;
            }
        }

        // 2. α² GEMMs: M_ξ (len × cout) = V_ξ (len × cin) · U_ξ (cin × cout).
        let u_stride = packed_b_len(p.cin, p.cout);
        for xi in 0..a2 {
            // SAFETY: V_ξ / M_ξ rows are inside scratch, U_ξ inside the packed weights.
            unsafe {
                let m_xi = m_base.add(xi * tb * p.cout_p);
                gemm_rows::<S>(
                    self.len,
                    p.cin,
                    v_base.add(xi * tb * p.cin_p),
                    p.cin_p,
                    self.packed.add(xi * u_stride),
                    p.cin * PANEL,
                    p.cout,
                    std::ptr::null(),
                    Epilogue::default(),
                    |r| m_xi.add(r * p.cout_p),
                    None,
                );
            }
        }

        // 3. Output transform with the epilogue: rows of M first (t = M A), then columns
        // (Y = Aᵀ t).
        for i in 0..self.len {
            let (img, oy, ox) = tile_origin(self.t0 + i);
            let rows = (out_h - oy).min(m_size);
            let cols = (out_w - ox).min(m_size);
            let mut c = 0;
            while c < p.cout {
                let n = (p.cout - c).min(S::LANES);
                // SAFETY: M rows are inside scratch (c + LANES <= cout_p); output and residual
                // pixels are inside the tile's valid rows/cols, channels c..c + n <= cout.
                unsafe {
                    let mut t = [[S::zero(); 6]; 6];
                    for a in 0..alpha {
                        let mut row = [S::zero(); 6];
                        for b in 0..alpha {
                            row[b] = S::load(m_base.add(((a * alpha + b) * tb + i) * p.cout_p + c));
                        }
                        t[a] = W::at::<S>(&row);
                    }
                    let bias = S::load_n(self.bias.add(c), n);
                    for b in 0..cols {
                        let col = [t[0][b], t[1][b], t[2][b], t[3][b], t[4][b], t[5][b]];
                        let y = W::at::<S>(&col);
                        for a in 0..rows {
                            let px = (img * out_h + oy + a) * out_w + ox + b;
                            let res = self
                                .residual
                                .map(|(r, ps)| S::load_n(r.add(px * ps + c), n));
                            let v = finish::<S>(y[a], bias, res, self.epilogue);
                            S::store_n(self.output.add(px * self.out_ps + c), v, n);
                        }
                    }
                }
                c += S::LANES;
            }
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
