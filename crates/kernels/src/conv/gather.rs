//! Convolution as GEMM over gathered receptive fields ("im2col"), or over the input itself for
//! 1×1 kernels without padding.
//!
//! A [`Gather`] describes a grid of output positions `(n, qy, qx)` and, for each kernel tap
//! `(ty, tx)`, the input pixel it reads: `(qy * in_step_y + taps_y[ty], qx * in_step_x +
//! taps_x[tx])`. Output position `(qy, qx)` is output pixel `(qy * out_step_y + out_origin_y,
//! qx * out_step_x + out_origin_x)`. A regular convolution is one such grid (out step 1, in
//! step = stride, taps = `k * dilation - pad`); a transposed convolution is one grid per output
//! phase (see `transposed.rs`).
//!
//! One work item takes a block of consecutive grid positions and runs the GEMM micro-kernel on
//! their receptive fields (`K = taps * cin_per_group` values, ordered kernel row, kernel column,
//! channel) against the packed weights, epilogue fused. Where a kernel row's taps are one
//! contiguous run of the input, positions whose taps all lie inside the image read the input in
//! place, one accumulation segment per kernel row; the others are first gathered ("im2col")
//! into the thread's scratch.

use super::{Conv2dSpec, ConvIo};
use crate::epilogue::Epilogue;
use crate::gemm::{PANEL, Segment, gemm_rows, pack_panels, packed_b_len};
use crate::simd::{self, Simd};
use crate::threads::for_each_item;
use crate::{Context, SimdKernel, dispatch};

/// Runs GEMM rows `start..start + len` of a work item whose A is the given segments at a row
/// stride: `(start, len, segments, lda)`.
type RunRows<'a> = dyn Fn(usize, usize, &[Segment], usize) + 'a;

/// Most kernel rows the in-place (indirect) path handles; taller kernels are gathered.
const MAX_SEGMENTS: usize = 16;

/// Floats of gathered rows a work item aims for (about 192 KiB, well inside L2).
const GATHER_BLOCK_FLOATS: usize = 48 * 1024;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Gather {
    pub groups: usize,
    pub cin_g: usize,
    pub cout_g: usize,
    /// Output positions per image `[QH, QW]`.
    pub grid: [usize; 2],
    pub out_origin: [usize; 2],
    pub out_step: [usize; 2],
    pub in_step: [usize; 2],
    pub taps_y: Vec<isize>,
    pub taps_x: Vec<isize>,
    /// Rows are read from the input in place (single tap at offset 0, always inside).
    pub direct: bool,
    /// Grid positions per work item.
    pub row_block: usize,
    /// Offset of this grid's packed weights inside the operator's packed buffer.
    pub packed_offset: usize,
}

impl Gather {
    /// The single grid of a regular convolution.
    pub fn for_conv(spec: &Conv2dSpec, output_size: [usize; 2], direct: bool) -> Gather {
        let taps = |axis: usize, pad: usize| -> Vec<isize> {
            (0..spec.kernel[axis])
                .map(|k| (k * spec.dilation[axis]) as isize - pad as isize)
                .collect()
        };
        let cin_g = spec.in_channels / spec.groups;
        let mut g = Gather {
            groups: spec.groups,
            cin_g,
            cout_g: spec.out_channels / spec.groups,
            grid: output_size,
            out_origin: [0, 0],
            out_step: [1, 1],
            in_step: spec.stride,
            taps_y: taps(0, spec.padding.top),
            taps_x: taps(1, spec.padding.left),
            direct,
            row_block: 0,
            packed_offset: 0,
        };
        g.row_block = row_block_for(g.k());
        g
    }

    /// Depth of the GEMM: taps times input channels per group.
    pub fn k(&self) -> usize {
        self.taps_y.len() * self.taps_x.len() * self.cin_g
    }

    /// Packed floats of one group's weights.
    pub fn group_stride(&self) -> usize {
        packed_b_len(self.k(), self.cout_g)
    }

    pub fn scratch_per_thread(&self) -> usize {
        if self.direct {
            0
        } else {
            self.row_block * self.k()
        }
    }

    /// Packs ONNX conv weights `[out][in/g][kh][kw]` with rows ordered (ky, kx, ci).
    pub fn pack_conv_weights(&self, spec: &Conv2dSpec, weights: &[f32], out: &mut [f32]) {
        let [kh, kw] = spec.kernel;
        let (cin_g, cout_g) = (self.cin_g, self.cout_g);
        let stride = self.group_stride();
        for g in 0..self.groups {
            pack_panels(
                self.k(),
                cout_g,
                &mut out[g * stride..(g + 1) * stride],
                |row, co| {
                    let (tap, ci) = (row / cin_g, row % cin_g);
                    let (ky, kx) = (tap / kw, tap % kw);
                    weights[(((g * cout_g + co) * cin_g + ci) * kh + ky) * kw + kx]
                },
            );
        }
    }

    /// Runs the grid: every position's output pixel gets `epilogue(sum over taps)`.
    pub fn execute(
        &self,
        ctx: &Context,
        spec: &Conv2dSpec,
        packed: &[f32],
        io: ConvIo<'_>,
        scratch: &mut [f32],
    ) {
        self.execute_with(ctx, spec.epilogue, packed, io, scratch)
    }

    pub fn execute_with(
        &self,
        ctx: &Context,
        epilogue: Epilogue,
        packed: &[f32],
        mut io: ConvIo<'_>,
        scratch: &mut [f32],
    ) {
        let [n, in_h, in_w, _] = io.input.dims;
        let [_, out_h, out_w, _] = io.output.dims;
        let positions = n * self.grid[0] * self.grid[1];
        if positions == 0 {
            return;
        }
        let items = positions.div_ceil(self.row_block);
        let (out, residual) = io.output_and_residual();
        let out_ps = io.output.pixel_stride;
        let input = io.input;
        let bias = io.bias;
        let isa = ctx.isa();
        let k = self.k();
        let per_thread = self.scratch_per_thread();
        // Kernel rows can be read in place when one row's x taps are one contiguous run of
        // the input: adjacent taps over densely stored channels of a single group.
        let indirect = !self.direct
            && k > 0
            && self.groups == 1
            && input.pixel_stride == self.cin_g
            && self.taps_y.len() <= MAX_SEGMENTS
            && self.taps_x.windows(2).all(|w| w[1] == w[0] + 1);
        // Output pixel index of grid position p.
        let out_pixel = move |p: usize| -> usize {
            let qx = p % self.grid[1];
            let qy = (p / self.grid[1]) % self.grid[0];
            let img = p / (self.grid[0] * self.grid[1]);
            let oy = qy * self.out_step[0] + self.out_origin[0];
            let ox = qx * self.out_step[1] + self.out_origin[1];
            (img * out_h + oy) * out_w + ox
        };
        let job = |item: usize, rows_buf: &mut [f32]| {
            let p0 = item * self.row_block;
            let rows = self.row_block.min(positions - p0);
            for g in 0..self.groups {
                let b = &packed[self.packed_offset + g * self.group_stride()..];
                let bias_g = &bias[g * self.cout_g..];
                let c_off = g * self.cout_g;
                let c_row = |i: usize| -> *mut f32 {
                    // SAFETY: out_pixel(p) < N*OH*OW and c_off + cout_g <= C, inside the
                    // validated output view.
                    unsafe { out.get().add(out_pixel(p0 + i) * out_ps + c_off) }
                };
                let res_row = residual.map(|(r, rps)| {
                    move |i: usize| -> *const f32 {
                        // SAFETY: the residual has the output's dims (checked).
                        unsafe { r.get().add(out_pixel(p0 + i) * rps + c_off) as *const f32 }
                    }
                });
                // Runs GEMM rows `start..start + len` of this item whose A is `segs` at `lda`.
                let run = |start: usize, len: usize, segs: &[Segment], lda: usize| {
                    let shifted_c = |i: usize| c_row(start + i);
                    let shifted_res = res_row.as_ref().map(|f| move |i: usize| f(start + i));
                    let block = GatherGemm {
                        rows: len,
                        segments: segs,
                        lda,
                        b: b.as_ptr(),
                        b_panel_stride: k * PANEL,
                        n: self.cout_g,
                        bias: bias_g.as_ptr(),
                        epilogue,
                        c_row: &shifted_c,
                        res_row: shifted_res
                            .as_ref()
                            .map(|f| f as &dyn Fn(usize) -> *const f32),
                    };
                    // SAFETY: items cover disjoint output pixels; rows and weights are in bounds.
                    unsafe { dispatch(isa, block) };
                };
                if self.direct {
                    self.direct_segments(
                        p0,
                        rows,
                        g,
                        input,
                        in_h,
                        in_w,
                        &mut |start, len, a, lda| {
                            run(start, len, &[Segment { a, k, b_row: 0 }], lda)
                        },
                    );
                } else if indirect {
                    self.indirect_runs(isa, p0, rows, input, in_h, in_w, &mut rows_buf[..k], &run);
                } else {
                    self.gather_rows(
                        isa,
                        p0,
                        rows,
                        g,
                        input,
                        in_h,
                        in_w,
                        &mut rows_buf[..rows * k],
                    );
                    run(
                        0,
                        rows,
                        &[Segment {
                            a: rows_buf.as_ptr(),
                            k,
                            b_row: 0,
                        }],
                        k,
                    );
                }
            }
        };
        for_each_item(ctx.pool(), io.threads, items, scratch, per_thread, &job);
    }

    /// Direct (1×1, unpadded) rows: split the block where the input row stride changes.
    #[allow(clippy::too_many_arguments)]
    fn direct_segments(
        &self,
        p0: usize,
        rows: usize,
        g: usize,
        input: crate::Nhwc<'_>,
        in_h: usize,
        in_w: usize,
        run: &mut dyn FnMut(usize, usize, *const f32, usize),
    ) {
        let ps = input.pixel_stride;
        let base = input.data.as_ptr();
        let ch = g * self.cin_g;
        let [qh, qw] = self.grid;
        let in_pixel = |p: usize| -> usize {
            let qx = p % qw;
            let qy = (p / qw) % qh;
            let img = p / (qh * qw);
            let iy = (qy * self.in_step[0]) as isize + self.taps_y[0];
            let ix = (qx * self.in_step[1]) as isize + self.taps_x[0];
            (img * in_h + iy as usize) * in_w + ix as usize
        };
        if self.in_step == [1, 1] && self.grid == [in_h, in_w] {
            // Positions and input pixels coincide: one uniform run.
            // SAFETY: pixel p0 + rows - 1 is inside the validated input.
            run(0, rows, unsafe { base.add(in_pixel(p0) * ps + ch) }, ps);
            return;
        }
        let mut start = 0;
        while start < rows {
            let p = p0 + start;
            let len = (qw - p % qw).min(rows - start);
            // SAFETY: as above; a run stays within one grid row, stride in_step_x pixels.
            run(
                start,
                len,
                unsafe { base.add(in_pixel(p) * ps + ch) },
                self.in_step[1] * ps,
            );
            start += len;
        }
    }

    /// The block `p0..p0 + rows` without gathering: within one grid row, the positions whose x
    /// taps all fall inside the input read each kernel row straight from the input (one segment
    /// per kernel row inside the image, rows of the run `in_step_x` pixels apart); positions
    /// at the left/right border are gathered one at a time into `row_buf`.
    #[allow(clippy::too_many_arguments)]
    fn indirect_runs(
        &self,
        isa: crate::Isa,
        p0: usize,
        rows: usize,
        input: crate::Nhwc<'_>,
        in_h: usize,
        in_w: usize,
        row_buf: &mut [f32],
        run: &RunRows,
    ) {
        let k = self.k();
        let [qh, qw] = self.grid;
        let (sy, sx) = (self.in_step[0] as isize, self.in_step[1] as isize);
        let (first_x, last_x) = (self.taps_x[0], self.taps_x[self.taps_x.len() - 1]);
        // Interior grid columns: qx * sx + first_x >= 0 and qx * sx + last_x < in_w.
        let qx_lo = if first_x >= 0 {
            0
        } else {
            ((-first_x) + sx - 1) / sx
        } as usize;
        let qx_hi = if (in_w as isize) <= last_x {
            0
        } else {
            ((in_w as isize - 1 - last_x) / sx + 1) as usize
        }
        .min(qw);
        let row_len = self.taps_x.len() * self.cin_g;
        let ps = input.pixel_stride;
        let base = input.data.as_ptr();
        let mut start = 0;
        while start < rows {
            let p = p0 + start;
            let qx = p % qw;
            let qy = (p / qw) % qh;
            let img = p / (qh * qw);
            let len_row = (qw - qx).min(rows - start);
            // The run's interior columns lo..hi, clamped into the run qx..qx + len_row.
            let end = qx + len_row;
            let lo = qx_lo.clamp(qx, end);
            let hi = qx_hi.clamp(lo, end);
            if lo < hi {
                let mut segs = [Segment {
                    a: std::ptr::null(),
                    k: 0,
                    b_row: 0,
                }; MAX_SEGMENTS];
                let mut count = 0;
                for (ty, &dy) in self.taps_y.iter().enumerate() {
                    let iy = qy as isize * sy + dy;
                    if iy < 0 || iy >= in_h as isize {
                        continue;
                    }
                    let ix = lo as isize * sx + first_x;
                    let px = (img * in_h + iy as usize) * in_w + ix as usize;
                    // SAFETY: ix >= 0 and every row of the run stays inside the image row
                    // (interior columns), so all reads are inside the validated input.
                    segs[count] = Segment {
                        a: unsafe { base.add(px * ps) },
                        k: row_len,
                        b_row: ty * row_len,
                    };
                    count += 1;
                }
                run(
                    start + (lo - qx),
                    hi - lo,
                    &segs[..count],
                    self.in_step[1] * ps,
                );
            }
            // Border positions of this grid row, one gathered row each.
            for q in (qx..lo).chain(hi..end) {
                let i = start + (q - qx);
                self.gather_rows(isa, p0 + i, 1, 0, input, in_h, in_w, &mut row_buf[..k]);
                run(
                    i,
                    1,
                    &[Segment {
                        a: row_buf.as_ptr(),
                        k,
                        b_row: 0,
                    }],
                    k,
                );
            }
            start += len_row;
        }
    }

    /// Writes the receptive fields of positions `p0..p0 + rows` (group `g`) as rows of `k` floats.
    #[allow(clippy::too_many_arguments)]
    fn gather_rows(
        &self,
        isa: crate::Isa,
        p0: usize,
        rows: usize,
        g: usize,
        input: crate::Nhwc<'_>,
        in_h: usize,
        in_w: usize,
        dst: &mut [f32],
    ) {
        debug_assert!(dst.len() >= rows * self.k());
        let fill = GatherFill {
            gather: self,
            p0,
            rows,
            g,
            input,
            in_h,
            in_w,
            dst: dst.as_mut_ptr(),
        };
        // SAFETY: `dst` holds rows * k floats; reads are bounds-checked per tap against the
        // validated input view.
        unsafe { dispatch(isa, fill) };
    }
}

/// The gather of one work item, vectorised so short runs (3 channels of an RGB image, a few
/// taps) do not pay for a `memcpy` call each.
struct GatherFill<'a> {
    gather: &'a Gather,
    p0: usize,
    rows: usize,
    g: usize,
    input: crate::Nhwc<'a>,
    in_h: usize,
    in_w: usize,
    dst: *mut f32,
}

impl SimdKernel for GatherFill<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let gth = self.gather;
        let k = gth.k();
        if k == 0 {
            // A phase of a transposed convolution that no kernel tap reaches: nothing to gather.
            return;
        }
        let cin = gth.cin_g;
        let ps = self.input.pixel_stride;
        let ch = self.g * cin;
        let data = self.input.data.as_ptr();
        let (in_h, in_w) = (self.in_h, self.in_w);
        let [qh, qw] = gth.grid;
        let taps_x = &gth.taps_x;
        // Consecutive x taps read consecutive floats when the taps are adjacent and pixels dense.
        let runs_contiguous = ps == cin && taps_x.windows(2).all(|w| w[1] == w[0] + 1);
        let row_len_x = taps_x.len() * cin;
        for r in 0..self.rows {
            let p = self.p0 + r;
            let qx = p % qw;
            let qy = (p / qw) % qh;
            let img = p / (qh * qw);
            let iy0 = (qy * gth.in_step[0]) as isize;
            let ix0 = (qx * gth.in_step[1]) as isize;
            // SAFETY: row r of dst; every read is a pixel checked to be inside the input.
            unsafe {
                let row = self.dst.add(r * k);
                for (ty, &dy) in gth.taps_y.iter().enumerate() {
                    let seg = row.add(ty * row_len_x);
                    let iy = iy0 + dy;
                    if iy < 0 || iy >= in_h as isize {
                        simd::zero::<S>(seg, row_len_x);
                        continue;
                    }
                    let line = (img * in_h + iy as usize) * in_w;
                    if runs_contiguous {
                        // Valid taps tx satisfy 0 <= ix0 + taps_x[0] + tx < in_w.
                        let first = ix0 + taps_x[0];
                        let lo = (-first).clamp(0, taps_x.len() as isize) as usize;
                        let hi = (in_w as isize - first).clamp(lo as isize, taps_x.len() as isize)
                            as usize;
                        simd::zero::<S>(seg, lo * cin);
                        if hi > lo {
                            let src = (line + (first + lo as isize) as usize) * ps + ch;
                            simd::copy::<S>(seg.add(lo * cin), data.add(src), (hi - lo) * cin);
                        }
                        simd::zero::<S>(seg.add(hi * cin), row_len_x - hi * cin);
                    } else {
                        for (tx, &dx) in taps_x.iter().enumerate() {
                            let ix = ix0 + dx;
                            let d = seg.add(tx * cin);
                            if ix < 0 || ix >= in_w as isize {
                                simd::zero::<S>(d, cin);
                            } else {
                                let src = (line + ix as usize) * ps + ch;
                                simd::copy::<S>(d, data.add(src), cin);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Grid positions per work item for GEMM depth `k`: about [`GATHER_BLOCK_FLOATS`] of rows, a
/// multiple of 12 (whole micro-tiles on every instruction set), between 12 and 480.
pub(crate) fn row_block_for(k: usize) -> usize {
    ((GATHER_BLOCK_FLOATS / k.max(1)) / 12 * 12).clamp(12, 480)
}

/// One GEMM call of a work item with per-row output pointers.
struct GatherGemm<'f> {
    rows: usize,
    segments: &'f [Segment],
    lda: usize,
    b: *const f32,
    b_panel_stride: usize,
    n: usize,
    bias: *const f32,
    epilogue: Epilogue,
    c_row: &'f dyn Fn(usize) -> *mut f32,
    res_row: Option<&'f dyn Fn(usize) -> *const f32>,
}

impl SimdKernel for GatherGemm<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        // SAFETY: forwarded from the creator (`execute_with`).
        unsafe {
            gemm_rows::<S>(
                self.rows,
                self.segments,
                self.lda,
                self.b,
                self.b_panel_stride,
                self.n,
                self.bias,
                self.epilogue,
                self.c_row,
                self.res_row,
            )
        }
    }
}
