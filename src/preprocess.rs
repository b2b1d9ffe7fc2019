//! Video frame → network input tensor, a row at a time (kernels in `rows`): scale (nearest or
//! bilinear, optionally keeping the aspect ratio with padding), convert to the model's colour
//! order (YUV is converted after interpolation: both are affine, so the result is the same and it
//! costs one conversion per pixel), normalise per channel as `(x − offset) · net_scale / std`, and
//! write NCHW or NHWC floats. Column offsets and weights are prepared once per (format, frame
//! size, network input), row buffers kept across frames.
//!
//! No GStreamer types cross this boundary: the element describes the frame with [`FrameView`].

use std::fmt;
use std::sync::{Mutex, PoisonError};

mod rows;
use rows::{ChannelRows, ChannelTaps, Normalise, SourceColour};

/// Pixel layouts of the accepted raw video formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// One plane, `bytes_per_pixel` bytes per pixel, R, G and B at the given byte offsets.
    Packed {
        bytes_per_pixel: usize,
        r: usize,
        g: usize,
        b: usize,
    },
    Gray8,
    /// Y plane, then one plane of interleaved U,V at half resolution.
    Nv12,
    /// Y, U and V planes, chroma at half resolution.
    I420,
}

impl SourceFormat {
    pub fn planes(self) -> usize {
        match self {
            SourceFormat::Packed { .. } | SourceFormat::Gray8 => 1,
            SourceFormat::Nv12 => 2,
            SourceFormat::I420 => 3,
        }
    }
}

/// YUV → RGB matrix of a stream's colorimetry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YuvMatrix {
    Bt601,
    Bt709,
    Bt2020,
}

/// One video frame's planes as the element mapped them.
pub struct FrameView<'a> {
    pub planes: [&'a [u8]; 3],
    pub strides: [usize; 3],
}

/// Channel order the network expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorOrder {
    Rgb,
    Bgr,
    Gray,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalingFilter {
    Nearest,
    Bilinear,
}

/// Memory layout of one image in the input tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorLayout {
    Chw,
    Hwc,
}

/// What the network input looks like and how pixels are normalised.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    pub width: usize,
    pub height: usize,
    pub color: ColorOrder,
    pub layout: TensorLayout,
    pub net_scale_factor: f32,
    /// Per network channel (a single value applies to all channels).
    pub offsets: Vec<f32>,
    pub std: Vec<f32>,
    pub maintain_aspect_ratio: bool,
    pub symmetric_padding: bool,
    pub filter: ScalingFilter,
}

impl InputSpec {
    pub fn channels(&self) -> usize {
        match self.color {
            ColorOrder::Gray => 1,
            _ => 3,
        }
    }

    pub fn elements(&self) -> usize {
        self.width * self.height * self.channels()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreprocessError(pub String);

impl fmt::Display for PreprocessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PreprocessError {}

/// Where the scaled frame lands in the network input (the rest is padding).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

/// Source sample positions for one output coordinate: `i0` and `i1` with weight `w` on `i1`.
#[derive(Clone, Copy, Debug, Default)]
struct Tap {
    i0: usize,
    i1: usize,
    w: f32,
}

fn taps(src_len: usize, dst_len: usize, filter: ScalingFilter) -> Vec<Tap> {
    let ratio = src_len as f64 / dst_len as f64;
    let last = src_len.saturating_sub(1);
    (0..dst_len)
        .map(|d| match filter {
            ScalingFilter::Nearest => {
                let i = (((d as f64 + 0.5) * ratio) as usize).min(last);
                Tap {
                    i0: i,
                    i1: i,
                    w: 0.0,
                }
            }
            ScalingFilter::Bilinear => {
                // Pixel centres aligned (half-pixel mapping), clamped at the borders.
                let s = ((d as f64 + 0.5) * ratio - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(last);
                let i1 = (i0 + 1).min(last);
                Tap {
                    i0,
                    i1,
                    w: (s - i0 as f64) as f32,
                }
            }
        })
        .collect()
}

/// Affine YUV → RGB: `rgb = y_gain·(Y − y_offset) + chroma terms on (U−128, V−128)`.
#[derive(Clone, Copy, Debug)]
struct YuvCoefficients {
    y_gain: f32,
    y_offset: f32,
    rv: f32,
    gu: f32,
    gv: f32,
    bu: f32,
}

impl YuvCoefficients {
    fn new(matrix: YuvMatrix, full_range: bool) -> YuvCoefficients {
        let (kr, kb) = match matrix {
            YuvMatrix::Bt601 => (0.299f32, 0.114f32),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
            YuvMatrix::Bt2020 => (0.2627, 0.0593),
        };
        let kg = 1.0 - kr - kb;
        let (y_gain, y_offset, c_gain) = if full_range {
            (1.0, 0.0, 1.0)
        } else {
            (255.0 / 219.0, 16.0, 255.0 / 224.0)
        };
        YuvCoefficients {
            y_gain,
            y_offset,
            rv: 2.0 * (1.0 - kr) * c_gain,
            gu: 2.0 * kb * (1.0 - kb) / kg * c_gain,
            gv: 2.0 * kr * (1.0 - kr) / kg * c_gain,
            bu: 2.0 * (1.0 - kb) * c_gain,
        }
    }

    #[inline(always)]
    fn rgb(&self, y: f32, u: f32, v: f32) -> [f32; 3] {
        let l = self.y_gain * (y - self.y_offset);
        let (u, v) = (u - 128.0, v - 128.0);
        [
            (l + self.rv * v).clamp(0.0, 255.0),
            (l - self.gu * u - self.gv * v).clamp(0.0, 255.0),
            (l + self.bu * u).clamp(0.0, 255.0),
        ]
    }
}

/// Largest magnitude a sound input reaches: raw 8-bit pixels (255) with a wide margin. Image
/// networks are trained on [0, 1], [-1, 1] or mean-subtracted [-128, 128]-like ranges.
pub const SANE_INPUT_MAGNITUDE: f32 = 1024.0;

/// Checks the statistics of preprocessed input (one batch of tensors) against what any image
/// network can use; returns why it looks wrong, or `None`. The rules, in order:
/// 1. every value is finite;
/// 2. not every value is the same (a network fed a constant sees no image: a blank source, or
///    net-scale-factor 0);
/// 3. no value exceeds [`SANE_INPUT_MAGNITUDE`] in magnitude (net-scale-factor, offsets or std on
///    the wrong scale, e.g. 255 instead of 1/255);
/// 4. the values spread over at least 1% of the span that net-scale-factor and std give 8-bit
///    pixels (`255 · net-scale-factor / std`, smallest over the channels): less means the frames
///    hold fewer than ~3 grey levels, i.e. they are blank or the scaling is off.
pub fn input_warning(values: &[f32], spec: &InputSpec) -> Option<String> {
    if values.is_empty() {
        return None;
    }
    // Lane-wise accumulators the compiler vectorises; NaN fails both comparisons and is caught
    // through the sum (NaN and infinities make it non-finite).
    const LANES: usize = 16;
    let (mut min, mut max, mut sum) = (
        [f32::INFINITY; LANES],
        [f32::NEG_INFINITY; LANES],
        [0f32; LANES],
    );
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for i in 0..LANES {
            let v = chunk[i];
            min[i] = if v < min[i] { v } else { min[i] };
            max[i] = if v > max[i] { v } else { max[i] };
            sum[i] += v;
        }
    }
    for (i, &v) in chunks.remainder().iter().enumerate() {
        min[i] = if v < min[i] { v } else { min[i] };
        max[i] = if v > max[i] { v } else { max[i] };
        sum[i] += v;
    }
    let total: f64 = sum.iter().map(|&v| f64::from(v)).sum();
    let min = min.iter().copied().fold(f32::INFINITY, f32::min);
    let max = max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !total.is_finite() || !min.is_finite() || !max.is_finite() {
        return Some(
            "the preprocessed input holds non-finite values (NaN or infinity): check net-scale-factor, offsets and std"
                .to_owned(),
        );
    }
    let mean = total / values.len() as f64;
    if min == max {
        return Some(format!(
            "every value of the preprocessed input is {min}: the network sees no image (blank frames, or net-scale-factor {})",
            spec.net_scale_factor
        ));
    }
    let magnitude = min.abs().max(max.abs());
    if magnitude > SANE_INPUT_MAGNITUDE {
        return Some(format!(
            "the preprocessed input reaches {magnitude} (range {min}..{max}, mean {mean:.3}), far beyond what image networks are trained on: check net-scale-factor ({}; 1/255 = 0.0039 maps pixels to 0..1), offsets and std",
            spec.net_scale_factor
        ));
    }
    let channels = spec.channels();
    let std_of = |c: usize| match spec.std.len() {
        0 => 1.0,
        1 => spec.std[0],
        _ => spec.std.get(c).copied().unwrap_or(1.0),
    };
    let span = (0..channels)
        .map(|c| (255.0 * spec.net_scale_factor / std_of(c)).abs())
        .fold(f32::INFINITY, f32::min);
    if span.is_finite() && max - min < span / 100.0 {
        return Some(format!(
            "the preprocessed input spans only {min}..{max} (mean {mean:.3}) where net-scale-factor and std give 8-bit pixels a span of {span}: the frames are nearly uniform or the preprocessing settings are off"
        ));
    }
    None
}

/// Output values one preprocessing thread should have before another is worth using: the row
/// kernels take well under 1 ns per value, and handing rows to the preprocessor's own (persistent)
/// worker costs a few µs. 3×480×640 (LPDNet) is worth two.
pub const VALUES_PER_THREAD: usize = 1 << 19;

/// How many of `threads` preprocessing a network input of `spec` can use profitably.
pub fn useful_threads(spec: &InputSpec, threads: usize) -> usize {
    threads.clamp(1, spec.elements().div_ceil(VALUES_PER_THREAD).max(1))
}

/// Prepared scaling and normalisation for one (frame format, frame size, network input).
pub struct Preprocessor {
    spec: InputSpec,
    format: SourceFormat,
    frame_width: usize,
    frame_height: usize,
    placement: Placement,
    rows: Vec<Tap>,
    chroma_rows: Vec<Tap>,
    /// Source channels: R, G, B of packed frames, Y, U, V, or the one gray channel.
    channels: Vec<ChannelTaps>,
    colour: SourceColour,
    normalise: Normalise,
    /// One set of cached source rows per thread, kept across frames (no allocation per frame).
    caches: Vec<Mutex<Vec<ChannelRows>>>,
    /// Started once with the preprocessor, so frames hand rows to waiting threads instead of
    /// starting threads of their own. None when one thread does all rows.
    pool: Option<tao_kernels::ThreadPool>,
}

impl Preprocessor {
    pub fn new(
        spec: &InputSpec,
        format: SourceFormat,
        frame_width: usize,
        frame_height: usize,
        matrix: YuvMatrix,
        full_range: bool,
        threads: usize,
    ) -> Result<Preprocessor, PreprocessError> {
        if frame_width == 0 || frame_height == 0 {
            return Err(PreprocessError(format!(
                "frame size {frame_width}x{frame_height} is empty"
            )));
        }
        if spec.width == 0 || spec.height == 0 {
            return Err(PreprocessError(format!(
                "network input size {}x{} is empty",
                spec.width, spec.height
            )));
        }
        let channels = spec.channels();
        let per_channel = |name: &str, values: &[f32], default: f32| match values.len() {
            0 => Ok(vec![default; channels]),
            1 => Ok(vec![values[0]; channels]),
            n if n == channels => Ok(values.to_vec()),
            n => Err(PreprocessError(format!(
                "{name} lists {n} values; the network input has {channels} channel(s)"
            ))),
        };
        let offsets = per_channel("offsets", &spec.offsets, 0.0)?;
        let std = per_channel("std", &spec.std, 1.0)?;
        if let Some(s) = std.iter().find(|s| !s.is_finite() || **s == 0.0) {
            return Err(PreprocessError(format!(
                "std value {s} must be finite and non-zero"
            )));
        }
        if !spec.net_scale_factor.is_finite() {
            return Err(PreprocessError("net-scale-factor must be finite".into()));
        }
        let mut gain = [0.0; 3];
        let mut bias = [0.0; 3];
        for c in 0..channels {
            gain[c] = spec.net_scale_factor / std[c];
            bias[c] = -offsets[c] * gain[c];
        }
        let placement = if spec.maintain_aspect_ratio {
            let scale = (spec.width as f64 / frame_width as f64)
                .min(spec.height as f64 / frame_height as f64);
            let w = ((frame_width as f64 * scale).round() as usize).clamp(1, spec.width);
            let h = ((frame_height as f64 * scale).round() as usize).clamp(1, spec.height);
            let (x, y) = if spec.symmetric_padding {
                ((spec.width - w) / 2, (spec.height - h) / 2)
            } else {
                (0, 0)
            };
            Placement {
                x,
                y,
                width: w,
                height: h,
            }
        } else {
            Placement {
                x: 0,
                y: 0,
                width: spec.width,
                height: spec.height,
            }
        };
        let (chroma_w, chroma_h) = (frame_width.div_ceil(2), frame_height.div_ceil(2));
        let cols = taps(frame_width, placement.width, spec.filter);
        let chroma_cols = taps(chroma_w, placement.width, spec.filter);
        let luma = |plane, step, offset| ChannelTaps::new(plane, false, &cols, step, offset);
        let chroma =
            |plane, step, offset| ChannelTaps::new(plane, true, &chroma_cols, step, offset);
        let (channels, colour) = match format {
            SourceFormat::Packed {
                bytes_per_pixel,
                r,
                g,
                b,
            } => (
                vec![
                    luma(0, bytes_per_pixel, r),
                    luma(0, bytes_per_pixel, g),
                    luma(0, bytes_per_pixel, b),
                ],
                SourceColour::Rgb,
            ),
            SourceFormat::Gray8 => (vec![luma(0, 1, 0)], SourceColour::Gray),
            SourceFormat::Nv12 => (
                vec![luma(0, 1, 0), chroma(1, 2, 0), chroma(1, 2, 1)],
                SourceColour::Yuv(YuvCoefficients::new(matrix, full_range)),
            ),
            SourceFormat::I420 => (
                vec![luma(0, 1, 0), chroma(1, 1, 0), chroma(2, 1, 0)],
                SourceColour::Yuv(YuvCoefficients::new(matrix, full_range)),
            ),
        };
        let threads = threads.clamp(1, placement.height);
        let caches = (0..threads)
            .map(|_| {
                let rows = channels.iter().map(|_| ChannelRows::new(placement.width));
                Mutex::new(rows.collect())
            })
            .collect();
        // Without workers the rows are still all done, on the calling thread.
        let pool = (threads > 1)
            .then(|| tao_kernels::ThreadPool::new(threads).ok())
            .flatten();
        Ok(Preprocessor {
            rows: taps(frame_height, placement.height, spec.filter),
            chroma_rows: taps(chroma_h, placement.height, spec.filter),
            channels,
            colour,
            normalise: Normalise {
                gain,
                bias,
                channel_of: match spec.color {
                    ColorOrder::Bgr => [2, 1, 0],
                    _ => [0, 1, 2],
                },
                gray: spec.color == ColorOrder::Gray,
                hwc: spec.layout == TensorLayout::Hwc,
            },
            caches,
            pool,
            spec: spec.clone(),
            format,
            frame_width,
            frame_height,
            placement,
        })
    }

    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Maps a point in network-input pixels to frame pixels.
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        let p = self.placement;
        (
            (x - p.x as f32) * self.frame_width as f32 / p.width as f32,
            (y - p.y as f32) * self.frame_height as f32 / p.height as f32,
        )
    }

    pub fn frame_size(&self) -> (usize, usize) {
        (self.frame_width, self.frame_height)
    }

    /// Checks that the planes hold a whole frame of the prepared format and size.
    fn check_frame(&self, frame: &FrameView) -> Result<(), PreprocessError> {
        let (w, h) = (self.frame_width, self.frame_height);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let need: [(usize, usize); 3] = match self.format {
            SourceFormat::Packed {
                bytes_per_pixel, ..
            } => [(w * bytes_per_pixel, h), (0, 0), (0, 0)],
            SourceFormat::Gray8 => [(w, h), (0, 0), (0, 0)],
            SourceFormat::Nv12 => [(w, h), (cw * 2, ch), (0, 0)],
            SourceFormat::I420 => [(w, h), (cw, ch), (cw, ch)],
        };
        for (i, &(row_bytes, rows)) in need.iter().enumerate().take(self.format.planes()) {
            let stride = frame.strides[i];
            let len = frame.planes[i].len();
            if stride < row_bytes || (rows > 0 && len < stride * (rows - 1) + row_bytes) {
                return Err(PreprocessError(format!(
                    "plane {i} of the {w}x{h} frame is too small ({len} bytes, stride {stride})"
                )));
            }
        }
        Ok(())
    }

    /// Writes one preprocessed image into `out` (length [`InputSpec::elements`]).
    pub fn run(&self, frame: &FrameView, out: &mut [f32]) -> Result<(), PreprocessError> {
        if out.len() != self.spec.elements() {
            return Err(PreprocessError(format!(
                "input tensor holds {} values, the network input needs {}",
                out.len(),
                self.spec.elements()
            )));
        }
        self.check_frame(frame)?;
        let p = self.placement;
        if p.width != self.spec.width || p.height != self.spec.height {
            self.fill_padding(out);
        }
        match self.spec.filter {
            ScalingFilter::Nearest => self.run_with::<false>(frame, out),
            ScalingFilter::Bilinear => self.run_with::<true>(frame, out),
        }
        Ok(())
    }

    /// Padding is a black pixel, normalised like any other.
    fn fill_padding(&self, out: &mut [f32]) {
        let (w, h, c) = (self.spec.width, self.spec.height, self.spec.channels());
        let black = self.normalise.bias;
        match self.spec.layout {
            TensorLayout::Chw => {
                for (ch, plane) in out.chunks_exact_mut(w * h).enumerate() {
                    plane.fill(black[ch]);
                }
            }
            TensorLayout::Hwc => {
                for px in out.chunks_exact_mut(c) {
                    px.copy_from_slice(&black[..c]);
                }
            }
        }
    }

    /// Splits the placed rows over threads; each writes its rows of every output plane.
    fn run_with<const BILINEAR: bool>(&self, frame: &FrameView, out: &mut [f32]) {
        let (w, h, c) = (self.spec.width, self.spec.height, self.spec.channels());
        let p = self.placement;
        // Output planes: one per channel (CHW) or one interleaved plane (HWC); values per pixel
        // in a plane's row.
        let (plane_count, per_pixel) = match self.spec.layout {
            TensorLayout::Chw => (c, 1),
            TensorLayout::Hwc => (1, c),
        };
        let row_len = w * per_pixel;
        let threads = self.caches.len().max(1);
        let rows_per_chunk = p.height.div_ceil(threads);
        // chunks[t][plane] = that thread's rows of that plane.
        let mut chunks: Vec<Vec<&mut [f32]>> = (0..threads).map(|_| Vec::new()).collect();
        for plane in out.chunks_exact_mut(w * h * c / plane_count) {
            let placed = &mut plane[p.y * row_len..(p.y + p.height) * row_len];
            for (t, rows) in placed.chunks_mut(rows_per_chunk * row_len).enumerate() {
                chunks[t].push(rows);
            }
        }
        let placed_columns = p.x * per_pixel..(p.x + p.width) * per_pixel;
        let work = |t: usize, mut planes: Vec<&mut [f32]>| {
            let Some(cache) = self.caches.get(t) else {
                return;
            };
            // A poisoned lock only means another frame panicked mid-row: the rows are rebuilt.
            let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
            let rows = RowChunk {
                first: t * rows_per_chunk,
                row_len,
                columns: placed_columns.clone(),
            };
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above); AVX2 only widens the vectors,
                // the arithmetic (no FMA contraction) and so the results stay the same.
                unsafe { self.rows_avx2::<BILINEAR>(frame, &rows, &mut planes, &mut cache) };
                return;
            }
            self.rows::<BILINEAR>(frame, &rows, &mut planes, &mut cache);
        };
        match &self.pool {
            Some(pool) => {
                // Each thread takes its own chunk once; a Mutex hands the &mut slices over.
                let chunks: Vec<Mutex<Option<Vec<&mut [f32]>>>> =
                    chunks.into_iter().map(|c| Mutex::new(Some(c))).collect();
                pool.run(&|t| {
                    let taken = chunks
                        .get(t)
                        .and_then(|c| c.lock().unwrap_or_else(PoisonError::into_inner).take());
                    if let Some(planes) = taken {
                        work(t, planes);
                    }
                });
            }
            None => {
                for (t, planes) in chunks.into_iter().enumerate() {
                    work(t, planes);
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn rows_avx2<const BILINEAR: bool>(
        &self,
        frame: &FrameView,
        rows: &RowChunk,
        planes: &mut [&mut [f32]],
        cache: &mut [ChannelRows],
    ) {
        self.rows::<BILINEAR>(frame, rows, planes, cache);
    }

    /// One thread's rows: `planes` holds them in every output plane.
    #[inline(always)]
    fn rows<const BILINEAR: bool>(
        &self,
        frame: &FrameView,
        rows: &RowChunk,
        planes: &mut [&mut [f32]],
        cache: &mut [ChannelRows],
    ) {
        cache.iter_mut().for_each(ChannelRows::forget);
        let count = planes.first().map_or(0, |p| p.len() / rows.row_len);
        for r in 0..count {
            let at = r * rows.row_len;
            let columns = at + rows.columns.start..at + rows.columns.end;
            let y = rows.first + r;
            match planes {
                [a] => self.row::<BILINEAR>(frame, y, cache, &mut [&mut a[columns]]),
                [a, b, c] => self.row::<BILINEAR>(
                    frame,
                    y,
                    cache,
                    &mut [
                        &mut a[columns.clone()],
                        &mut b[columns.clone()],
                        &mut c[columns],
                    ],
                ),
                _ => {}
            }
        }
    }

    /// Placed output row `y`: each source channel's values on it, then converted and normalised
    /// into `out` (the row's slice of every output plane, from the placed first column).
    #[inline(always)]
    fn row<const BILINEAR: bool>(
        &self,
        frame: &FrameView,
        y: usize,
        cache: &mut [ChannelRows],
        out: &mut [&mut [f32]],
    ) {
        let mut values: [&[f32]; 3] = [&[]; 3];
        for (k, (rows, taps)) in cache.iter_mut().zip(&self.channels).enumerate() {
            let table = if taps.chroma {
                &self.chroma_rows
            } else {
                &self.rows
            };
            let Some(tap) = table.get(y) else {
                return;
            };
            let (plane, stride) = (frame.planes[taps.plane], frame.strides[taps.plane]);
            values[k] = rows.row::<BILINEAR>(taps, tap, |i| plane.get(i * stride..).unwrap_or(&[]));
        }
        if self.channels.len() == 1 {
            values = [values[0]; 3];
        }
        rows::emit(values, self.colour, &self.normalise, out);
    }
}

/// A thread's share of the placed rows: from placed row `first`, `row_len` values per row of
/// an output plane, of which `columns` are the placed ones.
struct RowChunk {
    first: usize,
    row_len: usize,
    columns: std::ops::Range<usize>,
}

#[inline(always)]
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    a + (b - a) * w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_statistics_rules() {
        let spec = InputSpec {
            width: 2,
            height: 2,
            color: ColorOrder::Rgb,
            layout: TensorLayout::Chw,
            net_scale_factor: 1.0 / 255.0,
            offsets: vec![],
            std: vec![],
            maintain_aspect_ratio: false,
            symmetric_padding: false,
            filter: ScalingFilter::Nearest,
        };
        let image: Vec<f32> = (0..12).map(|i| i as f32 / 11.0).collect();
        assert_eq!(input_warning(&image, &spec), None);
        let w = input_warning(&[0.5; 12], &spec).unwrap();
        assert!(w.contains("every value") && w.contains("0.5"), "{w}");
        let mut nan = image.clone();
        nan[3] = f32::NAN;
        assert!(input_warning(&nan, &spec).unwrap().contains("non-finite"));
        // net-scale-factor 255 instead of 1/255.
        let huge: Vec<f32> = image.iter().map(|v| v * 65025.0).collect();
        let w = input_warning(&huge, &spec).unwrap();
        assert!(w.contains("net-scale-factor"), "{w}");
        // Two grey levels out of 256: under 1% of the span.
        let flat: Vec<f32> = (0..12).map(|i| (100 + i % 2) as f32 / 255.0).collect();
        assert!(
            input_warning(&flat, &spec)
                .unwrap()
                .contains("nearly uniform")
        );
        // The same spread is fine for a network whose settings give a span of 2.55.
        let scaled = InputSpec {
            net_scale_factor: 0.01,
            ..spec.clone()
        };
        assert_eq!(input_warning(&image, &scaled), None);
    }

    fn spec(w: usize, h: usize, color: ColorOrder) -> InputSpec {
        InputSpec {
            width: w,
            height: h,
            color,
            layout: TensorLayout::Chw,
            net_scale_factor: 1.0,
            offsets: vec![],
            std: vec![],
            maintain_aspect_ratio: false,
            symmetric_padding: false,
            filter: ScalingFilter::Nearest,
        }
    }

    const RGB: SourceFormat = SourceFormat::Packed {
        bytes_per_pixel: 3,
        r: 0,
        g: 1,
        b: 2,
    };

    #[test]
    fn identity_size_copies_channels_in_model_order() {
        // 2x1 RGB frame: red, then blue.
        let px = [255u8, 0, 0, 0, 0, 255];
        let frame = FrameView {
            planes: [&px, &[], &[]],
            strides: [6, 0, 0],
        };
        let p = Preprocessor::new(
            &spec(2, 1, ColorOrder::Bgr),
            RGB,
            2,
            1,
            YuvMatrix::Bt601,
            false,
            1,
        )
        .unwrap();
        let mut out = vec![0.0; 6];
        p.run(&frame, &mut out).unwrap();
        // Planes B, G, R.
        assert_eq!(out, [0.0, 255.0, 0.0, 0.0, 255.0, 0.0]);
    }

    #[test]
    fn normalisation_is_per_channel() {
        let px = [100u8, 150, 200];
        let frame = FrameView {
            planes: [&px, &[], &[]],
            strides: [3, 0, 0],
        };
        let mut s = spec(1, 1, ColorOrder::Rgb);
        s.net_scale_factor = 0.5;
        s.offsets = vec![10.0, 20.0, 30.0];
        s.std = vec![1.0, 2.0, 5.0];
        let p = Preprocessor::new(&s, RGB, 1, 1, YuvMatrix::Bt601, false, 1).unwrap();
        let mut out = vec![0.0; 3];
        p.run(&frame, &mut out).unwrap();
        assert_eq!(out, [45.0, 32.5, 17.0]);
        s.std = vec![1.0, 2.0];
        assert!(Preprocessor::new(&s, RGB, 1, 1, YuvMatrix::Bt601, false, 1).is_err());
    }

    #[test]
    fn nv12_grey_and_colour_convert() {
        // 2x2 NV12, limited range: Y=235 is white when U=V=128.
        let y = [235u8, 235, 16, 16];
        let uv = [128u8, 128];
        let frame = FrameView {
            planes: [&y, &uv, &[]],
            strides: [2, 2, 0],
        };
        let p = Preprocessor::new(
            &spec(2, 2, ColorOrder::Rgb),
            SourceFormat::Nv12,
            2,
            2,
            YuvMatrix::Bt601,
            false,
            1,
        )
        .unwrap();
        let mut out = vec![0.0; 12];
        p.run(&frame, &mut out).unwrap();
        for c in 0..3 {
            let plane = &out[c * 4..c * 4 + 4];
            assert!((plane[0] - 255.0).abs() < 0.01 && (plane[1] - 255.0).abs() < 0.01);
            assert!(plane[2].abs() < 0.01 && plane[3].abs() < 0.01);
        }
        // Pure red in BT.601 limited range: Y=81, U=90, V=240.
        let (y, uv) = ([81u8; 4], [90u8, 240]);
        let frame = FrameView {
            planes: [&y, &uv, &[]],
            strides: [2, 2, 0],
        };
        p.run(&frame, &mut out).unwrap();
        assert!(out[0] > 250.0 && out[4] < 5.0 && out[8] < 5.0, "{out:?}");
    }

    #[test]
    fn i420_matches_nv12() {
        let (w, h) = (6usize, 4usize);
        let y: Vec<u8> = (0..w * h).map(|i| (i * 7 % 256) as u8).collect();
        let u: Vec<u8> = (0..9).map(|i| (60 + i * 13) as u8).collect();
        let v: Vec<u8> = (0..9).map(|i| (200 - i * 11) as u8).collect();
        let uv: Vec<u8> = u.iter().zip(&v).flat_map(|(&a, &b)| [a, b]).collect();
        let mut s = spec(4, 3, ColorOrder::Bgr);
        s.filter = ScalingFilter::Bilinear;
        let run = |fmt, frame: &FrameView| {
            let p = Preprocessor::new(&s, fmt, w, h, YuvMatrix::Bt709, true, 2).unwrap();
            let mut out = vec![0.0; s.elements()];
            p.run(frame, &mut out).unwrap();
            out
        };
        let a = run(
            SourceFormat::Nv12,
            &FrameView {
                planes: [&y, &uv, &[]],
                strides: [w, 6, 0],
            },
        );
        let b = run(
            SourceFormat::I420,
            &FrameView {
                planes: [&y, &u, &v],
                strides: [w, 3, 3],
            },
        );
        assert_eq!(a, b);
    }

    #[test]
    fn aspect_ratio_pads_and_maps_back() {
        // A 4x2 white frame into a 4x4 input: rows 0-1 are the frame, rows 2-3 padding.
        let px = [255u8; 4 * 2 * 3];
        let frame = FrameView {
            planes: [&px, &[], &[]],
            strides: [12, 0, 0],
        };
        let mut s = spec(4, 4, ColorOrder::Rgb);
        s.maintain_aspect_ratio = true;
        s.offsets = vec![1.0];
        let p = Preprocessor::new(&s, RGB, 4, 2, YuvMatrix::Bt601, false, 3).unwrap();
        let mut out = vec![0.0; s.elements()];
        p.run(&frame, &mut out).unwrap();
        assert_eq!(&out[..8], &[254.0; 8]);
        assert_eq!(&out[8..16], &[-1.0; 8]);
        assert_eq!(p.to_frame(4.0, 2.0), (4.0, 2.0));

        s.symmetric_padding = true;
        let p = Preprocessor::new(&s, RGB, 4, 2, YuvMatrix::Bt601, false, 1).unwrap();
        p.run(&frame, &mut out).unwrap();
        assert_eq!(&out[..4], &[-1.0; 4]);
        assert_eq!(&out[4..12], &[254.0; 8]);
        assert_eq!(p.to_frame(0.0, 1.0), (0.0, 0.0));
    }

    #[test]
    fn threads_do_not_change_the_result() {
        let (w, h) = (37usize, 23usize);
        let px: Vec<u8> = (0..w * h * 4).map(|i| (i * 31 % 251) as u8).collect();
        let fmt = SourceFormat::Packed {
            bytes_per_pixel: 4,
            r: 2,
            g: 1,
            b: 0,
        };
        let frame = FrameView {
            planes: [&px, &[], &[]],
            strides: [w * 4, 0, 0],
        };
        for layout in [TensorLayout::Chw, TensorLayout::Hwc] {
            let mut s = spec(16, 11, ColorOrder::Rgb);
            s.layout = layout;
            s.filter = ScalingFilter::Bilinear;
            let out_for = |threads| {
                let p = Preprocessor::new(&s, fmt, w, h, YuvMatrix::Bt601, false, threads).unwrap();
                let mut out = vec![0.0; s.elements()];
                p.run(&frame, &mut out).unwrap();
                out
            };
            assert_eq!(out_for(1), out_for(3));
        }
    }

    /// The straightforward per-pixel computation: bilinear as `lerp(lerp(a, b, wx), lerp(c, d,
    /// wx), wy)` on the frame's bytes, YUV converted after interpolation, then normalised.
    fn per_pixel(
        p: &Preprocessor,
        format: SourceFormat,
        (fw, fh): (usize, usize),
        (matrix, full_range): (YuvMatrix, bool),
        frame: &FrameView,
    ) -> Vec<f32> {
        let s = p.spec();
        let place = p.placement();
        let (cw, ch) = (fw.div_ceil(2), fh.div_ceil(2));
        let (cols, rows) = (
            taps(fw, place.width, s.filter),
            taps(fh, place.height, s.filter),
        );
        let (ccols, crows) = (
            taps(cw, place.width, s.filter),
            taps(ch, place.height, s.filter),
        );
        let sample = |plane: usize, step: usize, off: usize, col: Tap, row: Tap| {
            let at = |r: usize, c: usize| {
                f32::from(frame.planes[plane][r * frame.strides[plane] + c * step + off])
            };
            match s.filter {
                ScalingFilter::Nearest => at(row.i0, col.i0),
                ScalingFilter::Bilinear => lerp(
                    lerp(at(row.i0, col.i0), at(row.i0, col.i1), col.w),
                    lerp(at(row.i1, col.i0), at(row.i1, col.i1), col.w),
                    row.w,
                ),
            }
        };
        let yuv = YuvCoefficients::new(matrix, full_range);
        let c = s.channels();
        let per_channel = |v: &[f32], default: f32, k: usize| match v.len() {
            0 => default,
            1 => v[0],
            _ => v[k],
        };
        let gain: Vec<f32> = (0..c)
            .map(|k| s.net_scale_factor / per_channel(&s.std, 1.0, k))
            .collect();
        let bias: Vec<f32> = (0..c)
            .map(|k| -per_channel(&s.offsets, 0.0, k) * gain[k])
            .collect();
        let mut out = vec![0.0; s.elements()];
        for y in 0..s.height {
            for x in 0..s.width {
                let inside = (place.x..place.x + place.width).contains(&x)
                    && (place.y..place.y + place.height).contains(&y);
                let mut values = [0f32; 3];
                if inside {
                    let (col, row) = (cols[x - place.x], rows[y - place.y]);
                    let (ccol, crow) = (ccols[x - place.x], crows[y - place.y]);
                    let [r, g, b] = match format {
                        SourceFormat::Packed {
                            bytes_per_pixel: n,
                            r,
                            g,
                            b,
                        } => [r, g, b].map(|o| sample(0, n, o, col, row)),
                        SourceFormat::Gray8 => [sample(0, 1, 0, col, row); 3],
                        SourceFormat::Nv12 => yuv.rgb(
                            sample(0, 1, 0, col, row),
                            sample(1, 2, 0, ccol, crow),
                            sample(1, 2, 1, ccol, crow),
                        ),
                        SourceFormat::I420 => yuv.rgb(
                            sample(0, 1, 0, col, row),
                            sample(1, 1, 0, ccol, crow),
                            sample(2, 1, 0, ccol, crow),
                        ),
                    };
                    values = match s.color {
                        ColorOrder::Rgb => [r, g, b],
                        ColorOrder::Bgr => [b, g, r],
                        ColorOrder::Gray => [0.299 * r + 0.587 * g + 0.114 * b, 0.0, 0.0],
                    };
                }
                for k in 0..c {
                    let v = if inside {
                        gain[k] * values[k] + bias[k]
                    } else {
                        bias[k]
                    };
                    match s.layout {
                        TensorLayout::Chw => out[(k * s.height + y) * s.width + x] = v,
                        TensorLayout::Hwc => out[(y * s.width + x) * c + k] = v,
                    }
                }
            }
        }
        out
    }

    #[test]
    fn row_kernels_match_the_per_pixel_computation() {
        let formats = [
            SourceFormat::Nv12,
            SourceFormat::I420,
            SourceFormat::Gray8,
            RGB,
            SourceFormat::Packed {
                bytes_per_pixel: 4,
                r: 2,
                g: 1,
                b: 0,
            },
            SourceFormat::Packed {
                bytes_per_pixel: 4,
                r: 0,
                g: 1,
                b: 2,
            },
        ];
        // (frame, network): odd downscales, upscales, whole-factor downscales (the strided
        // gathers), identity.
        let sizes = [
            ((37, 23), (16, 11)),
            ((13, 9), (29, 17)),
            ((40, 20), (20, 10)),
            ((42, 30), (14, 10)),
            ((7, 5), (7, 5)),
            ((64, 8), (9, 31)),
        ];
        let mut checked = 0;
        for format in formats {
            for &((fw, fh), (nw, nh)) in &sizes {
                let bytes_per_pixel = match format {
                    SourceFormat::Packed {
                        bytes_per_pixel, ..
                    } => bytes_per_pixel,
                    _ => 1,
                };
                // Strides with padding, a frame larger than the crop, and the crop's offsets.
                let (big_w, big_h) = (fw + 5, fh + 6);
                let luma_stride = big_w * bytes_per_pixel + 3;
                let chroma_stride = match format {
                    SourceFormat::Nv12 => big_w.div_ceil(2) * 2 + 1,
                    _ => big_w.div_ceil(2) + 2,
                };
                let fill = |n: usize, seed: usize| -> Vec<u8> {
                    (0..n).map(|i| ((i * 7919 + seed) % 251) as u8).collect()
                };
                let luma = fill(luma_stride * big_h, 1);
                let (u, v) = (
                    fill(chroma_stride * big_h.div_ceil(2), 2),
                    fill(chroma_stride * big_h.div_ceil(2), 3),
                );
                let whole = FrameView {
                    planes: [&luma, &u, &v],
                    strides: [luma_stride, chroma_stride, chroma_stride],
                };
                // A region starting at (2, 4) (even, as the element widens 4:2:0 regions).
                let crop = FrameView {
                    planes: [
                        &luma[4 * luma_stride + 2 * bytes_per_pixel..],
                        &u[2 * chroma_stride + if format == SourceFormat::Nv12 { 2 } else { 1 }..],
                        &v[2 * chroma_stride + 1..],
                    ],
                    strides: whole.strides,
                };
                for (frame, other) in [(&whole, &crop), (&crop, &whole)] {
                    for (filter, color, layout, aspect, symmetric, threads) in [
                        (
                            ScalingFilter::Nearest,
                            ColorOrder::Bgr,
                            TensorLayout::Chw,
                            false,
                            false,
                            1,
                        ),
                        (
                            ScalingFilter::Bilinear,
                            ColorOrder::Rgb,
                            TensorLayout::Chw,
                            true,
                            true,
                            3,
                        ),
                        (
                            ScalingFilter::Bilinear,
                            ColorOrder::Bgr,
                            TensorLayout::Hwc,
                            true,
                            false,
                            2,
                        ),
                        (
                            ScalingFilter::Nearest,
                            ColorOrder::Gray,
                            TensorLayout::Chw,
                            true,
                            true,
                            2,
                        ),
                        (
                            ScalingFilter::Bilinear,
                            ColorOrder::Gray,
                            TensorLayout::Hwc,
                            false,
                            false,
                            1,
                        ),
                        (
                            ScalingFilter::Nearest,
                            ColorOrder::Rgb,
                            TensorLayout::Hwc,
                            false,
                            false,
                            4,
                        ),
                    ] {
                        let mut s = spec(nw, nh, color);
                        s.filter = filter;
                        s.layout = layout;
                        s.maintain_aspect_ratio = aspect;
                        s.symmetric_padding = symmetric;
                        s.net_scale_factor = 1.0 / 255.0;
                        s.offsets = vec![0.485 * 255.0];
                        s.std = match color {
                            ColorOrder::Gray => vec![0.226],
                            _ => vec![0.229, 0.224, 0.225],
                        };
                        let colour = (YuvMatrix::Bt709, format == SourceFormat::I420);
                        let p = Preprocessor::new(&s, format, fw, fh, colour.0, colour.1, threads)
                            .unwrap();
                        let mut fast = vec![f32::NAN; s.elements()];
                        // After another frame: no rows cached from it may be reused.
                        p.run(other, &mut fast).unwrap();
                        p.run(frame, &mut fast).unwrap();
                        let slow = per_pixel(&p, format, (fw, fh), colour, frame);
                        for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
                            assert!(
                                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                                "{format:?} {fw}x{fh} -> {nw}x{nh} {filter:?} {color:?} {layout:?} aspect {aspect}: value {i} is {a}, per pixel {b}"
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 6 * 6 * 2 * 6);
    }

    #[test]
    fn small_inputs_stay_on_one_thread() {
        // A 3x64x64 input: one thread whatever the element has.
        assert_eq!(useful_threads(&spec(64, 64, ColorOrder::Rgb), 8), 1);
        // LPDNet's 3x480x640 (0.9M values) is worth two.
        assert_eq!(useful_threads(&spec(640, 480, ColorOrder::Rgb), 8), 2);
        assert_eq!(useful_threads(&spec(640, 480, ColorOrder::Rgb), 1), 1);
        // 3x2160x3840 (25M values) is worth 48.
        let uhd = spec(3840, 2160, ColorOrder::Rgb);
        assert_eq!(useful_threads(&uhd, 4), 4);
        assert_eq!(useful_threads(&uhd, 0), 1);
    }

    #[test]
    fn short_planes_are_refused() {
        let px = [0u8; 5];
        let frame = FrameView {
            planes: [&px, &[], &[]],
            strides: [6, 0, 0],
        };
        let p = Preprocessor::new(
            &spec(2, 1, ColorOrder::Rgb),
            RGB,
            2,
            1,
            YuvMatrix::Bt601,
            false,
            1,
        )
        .unwrap();
        let mut out = vec![0.0; 6];
        assert!(p.run(&frame, &mut out).is_err());
        let mut wrong = vec![0.0; 5];
        let ok = FrameView {
            planes: [&[0u8; 6], &[], &[]],
            strides: [6, 0, 0],
        };
        assert!(p.run(&ok, &mut wrong).is_err());
    }
}
