//! Row kernels of the preprocessor. Each source row that an output row needs is interpolated
//! horizontally once (a gather through per-column offsets prepared with the preprocessor) and kept
//! while the next output rows need it; the two rows are then blended vertically and converted and
//! normalised in plain slice loops the compiler vectorises. The arithmetic and its order are
//! those of the per-pixel bilinear `lerp(lerp(a, b, wx), lerp(c, d, wx), wy)`, so the results
//! equal the per-pixel ones bit for bit.

use super::{Tap, YuvCoefficients, lerp};

/// Where one source channel's samples lie in a source row, for every output column.
pub(super) struct ChannelTaps {
    pub plane: usize,
    /// Uses the chroma row taps (U and V of 4:2:0 frames).
    pub chroma: bool,
    /// Byte offsets of the left and right samples; `weight` is the right one's.
    left: Vec<usize>,
    right: Vec<usize>,
    weight: Vec<f32>,
    /// The longest run of columns whose samples are evenly spaced (downscaling by a whole
    /// factor, or none at all): gathered by a strided loop the compiler vectorises.
    even: Option<EvenRun>,
}

/// Columns `start..end` sample `left[start] + (x − start)·step` and that plus `delta`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct EvenRun {
    start: usize,
    end: usize,
    step: usize,
    delta: usize,
}

/// Spacings with a vectorised gather: 1 and 2 (planar and NV12 chroma, or luma halved), 3, 4
/// (packed pixels), 6 and 8 (packed pixels halved).
const EVEN_STEPS: [usize; 6] = [1, 2, 3, 4, 6, 8];

fn longest_even_run(left: &[usize], right: &[usize]) -> Option<EvenRun> {
    let mut best: Option<EvenRun> = None;
    let mut start = 0;
    while start + 1 < left.len() {
        let step = left[start + 1].wrapping_sub(left[start]);
        let delta = right[start].wrapping_sub(left[start]);
        let mut end = start + 1;
        while end < left.len()
            && left[end] == left[end - 1].wrapping_add(step)
            && right[end].wrapping_sub(left[end]) == delta
        {
            end += 1;
        }
        let run = EvenRun {
            start,
            end,
            step,
            delta,
        };
        if EVEN_STEPS.contains(&step) && best.is_none_or(|b| b.end - b.start < end - start) {
            best = Some(run);
        }
        start = end.max(start + 1);
    }
    best
}

impl ChannelTaps {
    /// A channel at byte `x·step + offset` of its plane's rows, sampled through `cols`.
    pub fn new(
        plane: usize,
        chroma: bool,
        cols: &[Tap],
        step: usize,
        offset: usize,
    ) -> ChannelTaps {
        let left: Vec<usize> = cols.iter().map(|c| c.i0 * step + offset).collect();
        let right: Vec<usize> = cols.iter().map(|c| c.i1 * step + offset).collect();
        ChannelTaps {
            plane,
            chroma,
            even: longest_even_run(&left, &right),
            left,
            right,
            weight: cols.iter().map(|c| c.w).collect(),
        }
    }

    /// Interpolates one source row horizontally into `out` (one value per output column).
    #[inline(always)]
    fn horizontal<const BILINEAR: bool>(&self, src: &[u8], out: &mut [f32]) {
        let Some(run) = self.even else {
            return self.gather::<BILINEAR>(src, 0..out.len(), out);
        };
        let first = self.left[run.start];
        let (head, rest) = out.split_at_mut(run.start);
        let (middle, tail) = rest.split_at_mut(run.end - run.start);
        self.gather::<BILINEAR>(src, 0..run.start, head);
        self.gather::<BILINEAR>(src, run.end..self.left.len(), tail);
        let weights = &self.weight[run.start..run.end];
        let done = match run.step {
            1 => strided::<1, BILINEAR>(src, first, run.delta, weights, middle),
            2 => strided::<2, BILINEAR>(src, first, run.delta, weights, middle),
            3 => strided::<3, BILINEAR>(src, first, run.delta, weights, middle),
            4 => strided::<4, BILINEAR>(src, first, run.delta, weights, middle),
            6 => strided::<6, BILINEAR>(src, first, run.delta, weights, middle),
            8 => strided::<8, BILINEAR>(src, first, run.delta, weights, middle),
            _ => 0,
        };
        // What the strided loop left (its last column, or all of a short row) through the offsets.
        self.gather::<BILINEAR>(src, run.start + done..run.end, &mut middle[done..]);
    }

    /// Columns `columns` of one source row through the offsets, into `out`.
    #[inline(always)]
    fn gather<const BILINEAR: bool>(
        &self,
        src: &[u8],
        columns: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        // Offsets lie inside the rows check_frame accepted; a short row reads as black.
        let at = |i: usize| f32::from(src.get(i).copied().unwrap_or(0));
        let (left, right) = (&self.left[columns.clone()], &self.right[columns.clone()]);
        if BILINEAR {
            let taps = left.iter().zip(right).zip(&self.weight[columns]);
            for (o, ((&l, &r), &w)) in out.iter_mut().zip(taps) {
                *o = lerp(at(l), at(r), w);
            }
        } else {
            for (o, &l) in out.iter_mut().zip(left) {
                *o = at(l);
            }
        }
    }
}

/// Evenly spaced samples `src[first + x·STEP]` (and `+ delta`), for all of `out` but its last
/// value (whose STEP-byte chunk may run past the row); returns how many it wrote, 0 when the
/// row is too short.
#[inline(always)]
fn strided<const STEP: usize, const BILINEAR: bool>(
    src: &[u8],
    first: usize,
    delta: usize,
    weights: &[f32],
    out: &mut [f32],
) -> usize {
    let n = out.len().saturating_sub(1);
    let chunks = |from: usize| src.get(from..from + n * STEP).map(|s| s.chunks_exact(STEP));
    let Some(left) = chunks(first) else {
        return 0;
    };
    if BILINEAR {
        let Some(right) = chunks(first + delta) else {
            return 0;
        };
        let taps = left.zip(right).zip(weights);
        for (o, ((l, r), &w)) in out[..n].iter_mut().zip(taps) {
            *o = lerp(f32::from(l[0]), f32::from(r[0]), w);
        }
    } else {
        for (o, l) in out[..n].iter_mut().zip(left) {
            *o = f32::from(l[0]);
        }
    }
    n
}

/// One thread's horizontally interpolated source rows of one channel, reused by consecutive
/// output rows that sample the same source rows.
pub(super) struct ChannelRows {
    held: [Option<usize>; 2],
    rows: [Vec<f32>; 2],
    blended: Vec<f32>,
}

impl ChannelRows {
    pub fn new(width: usize) -> ChannelRows {
        ChannelRows {
            held: [None; 2],
            rows: [vec![0.0; width], vec![0.0; width]],
            blended: vec![0.0; width],
        }
    }

    /// Drops the rows of the previous frame.
    pub fn forget(&mut self) {
        self.held = [None; 2];
    }

    /// The channel's values on the output row whose source rows are `tap`; `source_row(i)` is
    /// row `i` of the channel's plane.
    #[inline(always)]
    pub fn row<'s, 'f, const BILINEAR: bool>(
        &'s mut self,
        taps: &ChannelTaps,
        tap: &Tap,
        source_row: impl Fn(usize) -> &'f [u8],
    ) -> &'s [f32] {
        let top = self.fetch::<BILINEAR>(taps, tap.i0, None, &source_row);
        // lerp(t, b, 0) and lerp(t, t, w) are exactly t.
        if !BILINEAR || tap.i1 == tap.i0 || tap.w == 0.0 {
            return &self.rows[top];
        }
        let bottom = self.fetch::<BILINEAR>(taps, tap.i1, Some(top), &source_row);
        let (t, b) = (&self.rows[top], &self.rows[bottom]);
        for ((o, &t), &b) in self.blended.iter_mut().zip(t).zip(b) {
            *o = lerp(t, b, tap.w);
        }
        &self.blended
    }

    /// Slot holding source row `row`, interpolating it unless already held; never evicts `keep`.
    #[inline(always)]
    fn fetch<'f, const BILINEAR: bool>(
        &mut self,
        taps: &ChannelTaps,
        row: usize,
        keep: Option<usize>,
        source_row: &impl Fn(usize) -> &'f [u8],
    ) -> usize {
        if let Some(slot) = self.held.iter().position(|&h| h == Some(row)) {
            return slot;
        }
        // Rows advance downwards: evict the upper (or an empty) slot.
        let slot = match keep {
            Some(k) => 1 - k,
            None => usize::from(self.held[1] < self.held[0]),
        };
        taps.horizontal::<BILINEAR>(source_row(row), &mut self.rows[slot]);
        self.held[slot] = Some(row);
        slot
    }
}

/// How a row's three channel values become R, G and B (0..255).
#[derive(Clone, Copy)]
pub(super) enum SourceColour {
    Rgb,
    /// One channel, repeated.
    Gray,
    Yuv(YuvCoefficients),
}

/// Per network channel `value = gain·x + bias`, the channel order and the output layout.
pub(super) struct Normalise {
    pub gain: [f32; 3],
    pub bias: [f32; 3],
    /// Network channel that R, G and B land in.
    pub channel_of: [usize; 3],
    pub gray: bool,
    pub hwc: bool,
}

/// Converts one row of channel values and writes it normalised into the output row(s):
/// `out` is the three planes' rows (CHW) or the one interleaved row (HWC, or a gray network),
/// each starting at the placed row's first column.
#[inline(always)]
pub(super) fn emit(
    values: [&[f32]; 3],
    colour: SourceColour,
    norm: &Normalise,
    out: &mut [&mut [f32]],
) {
    match colour {
        SourceColour::Rgb => write_row(values, norm, out, |r, g, b| [r, g, b]),
        SourceColour::Gray => write_row(values, norm, out, |v, _, _| [v, v, v]),
        SourceColour::Yuv(k) => write_row(values, norm, out, |y, u, v| k.rgb(y, u, v)),
    }
}

#[inline(always)]
fn write_row(
    values: [&[f32]; 3],
    norm: &Normalise,
    out: &mut [&mut [f32]],
    rgb: impl Fn(f32, f32, f32) -> [f32; 3],
) {
    let n = values[0].len();
    // Equal lengths up front let the compiler drop the bounds checks and vectorise.
    let (s0, s1, s2) = (&values[0][..n], &values[1][..n], &values[2][..n]);
    let (gain, bias, to) = (norm.gain, norm.bias, norm.channel_of);
    match out {
        [plane] if norm.gray => {
            let plane = &mut plane[..n];
            for i in 0..n {
                let [r, g, b] = rgb(s0[i], s1[i], s2[i]);
                plane[i] = gain[0] * (0.299 * r + 0.587 * g + 0.114 * b) + bias[0];
            }
        }
        [plane] if norm.hwc => {
            for (i, px) in plane[..n * 3].chunks_exact_mut(3).enumerate() {
                let rgb = rgb(s0[i], s1[i], s2[i]);
                for (v, &k) in rgb.iter().zip(&to) {
                    px[k] = gain[k] * v + bias[k];
                }
            }
        }
        [p0, p1, p2] => {
            // Planes in R, G, B order with their network channel's gain and bias.
            let mut by_channel = [Some(&mut **p0), Some(&mut **p1), Some(&mut **p2)];
            let mut take = |k: usize| by_channel[k].take().unwrap_or_default();
            let (pr, pg, pb) = (take(to[0]), take(to[1]), take(to[2]));
            let (pr, pg, pb) = (&mut pr[..n], &mut pg[..n], &mut pb[..n]);
            let (gr, gg, gb) = (gain[to[0]], gain[to[1]], gain[to[2]]);
            let (br, bg, bb) = (bias[to[0]], bias[to[1]], bias[to[2]]);
            for i in 0..n {
                let [r, g, b] = rgb(s0[i], s1[i], s2[i]);
                pr[i] = gr * r + br;
                pg[i] = gg * g + bg;
                pb[i] = gb * b + bb;
            }
        }
        // Plane counts always match the layout (see Preprocessor::run_with).
        _ => {}
    }
}
