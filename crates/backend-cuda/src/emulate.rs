//! Runs a [`Program`] on the CPU with plain loops, step by step with the same index maps, arena
//! offsets and rounding to the activation type as the GPU kernels. It checks the lowering (fusion,
//! layouts, strides, liveness) against the reference executor on machines without a GPU, and gives
//! an FP16 program's expected error.

use crate::program::{
    ConvGeom, DType, Map, Operand, PoolGeom, Program, Residual, Step, Unary, binary, reduce, unary,
};

/// The element-wise functions, as the CUDA kernels compute them (in f32).
pub fn unary_f(f: &Unary, x: f32) -> f32 {
    use unary::*;
    match f.code {
        IDENTITY => x,
        RELU => x.max(0.0),
        CLIP => x.max(f.p0).min(f.p1),
        SIGMOID => 1.0 / (1.0 + (-x).exp()),
        TANH => x.tanh(),
        LEAKY_RELU => {
            if x < 0.0 {
                f.p0 * x
            } else {
                x
            }
        }
        EXP => x.exp(),
        LOG => x.ln(),
        SQRT => x.sqrt(),
        RECIPROCAL => 1.0 / x,
        NEG => -x,
        ABS => x.abs(),
        SOFTPLUS => {
            if x > 20.0 {
                x
            } else {
                x.exp().ln_1p()
            }
        }
        FLOOR => x.floor(),
        CEIL => x.ceil(),
        ELU => {
            if x < 0.0 {
                f.p0 * x.exp_m1()
            } else {
                x
            }
        }
        HARD_SIGMOID => (f.p0 * x + f.p1).clamp(0.0, 1.0),
        HARD_SWISH => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        ERF => erf(x),
        SOFTSIGN => x / (1.0 + x.abs()),
        SIGN => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        ROUND => x.round_ties_even(),
        SELU => {
            if x > 0.0 {
                f.p1 * x
            } else {
                f.p1 * f.p0 * x.exp_m1()
            }
        }
        SIN => x.sin(),
        COS => x.cos(),
        _ => f32::NAN,
    }
}

/// erf through the Chebyshev fit of erfc (fractional error under 1.2e-7), evaluated in f64; the
/// kernels call CUDA's `erff`.
fn erf(x: f32) -> f32 {
    let x = x as f64;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = 1.0
        - t * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    (if x >= 0.0 { y } else { -y }) as f32
}

pub fn binary_f(op: i32, a: f32, b: f32) -> f32 {
    match op {
        binary::ADD => a + b,
        binary::SUB => a - b,
        binary::MUL => a * b,
        binary::DIV => a / b,
        binary::POW => a.powf(b),
        binary::MAX => a.max(b),
        binary::MIN => a.min(b),
        binary::PRELU => {
            if a < 0.0 {
                a * b
            } else {
                a
            }
        }
        _ => f32::NAN,
    }
}

fn round_to(dtype: DType, v: f32) -> f32 {
    match dtype {
        DType::F32 => v,
        DType::F16 => half::f16::from_f32(v).to_f32(),
    }
}

/// Calls `f(dst, a, b)` with the three element offsets for every index of `map` at `batch`.
/// Walks the map as the kernels do ([`Map::walk`]: reordered and merged dimensions).
fn for_each(map: &Map, batch: usize, f: impl FnMut(i64, i64, i64)) {
    let w = map.walk(batch);
    for_each_walked(
        &Map {
            dims: w.dims,
            dst: w.dst,
            a: w.a,
            b: w.b,
            ..map.clone()
        },
        f,
    );
}

/// As [`for_each`] for a map already in walking order (every dimension, the batch included, as
/// it is).
fn for_each_walked(w: &Map, mut f: impl FnMut(i64, i64, i64)) {
    let count: usize = w.dims.iter().product();
    for i in 0..count {
        let (mut d, mut a, mut b) = (w.dst_offset, w.a_offset, w.b_offset);
        let mut rest = i;
        for k in (0..w.dims.len()).rev() {
            let c = (rest % w.dims[k]) as i64;
            rest /= w.dims[k];
            d += c * w.dst[k];
            a += c * w.a[k];
            b += c * w.b[k];
        }
        f(d, a, b);
    }
}

/// Element offsets of every index of `dims` (dims\[0\] replaced by `batch` when given).
fn offsets(dims: &[usize], strides: &[i64], batch: Option<usize>) -> Vec<i64> {
    let mut dims = dims.to_vec();
    if let Some(b) = batch {
        dims[0] = b;
    }
    let mut out = vec![0i64];
    for (k, &d) in dims.iter().enumerate() {
        let mut next = Vec::with_capacity(out.len() * d);
        for &o in &out {
            for c in 0..d {
                next.push(o + c as i64 * strides[k]);
            }
        }
        out = next;
    }
    out
}

struct Arena<'p> {
    program: &'p Program,
    data: Vec<f32>,
}

impl Arena<'_> {
    fn base(&self, v: usize) -> usize {
        self.program.values[v].offset / self.program.dtype.size()
    }
}

/// Runs `program` for `batch` images. `inputs[i]` is NCHW f32 for `batch` images; returns the
/// outputs in the same form.
pub fn run(program: &Program, batch: usize, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>, String> {
    crate::codec::validate(program)?;
    if batch == 0 || batch > program.max_batch {
        return Err(format!(
            "batch {batch} is outside 1..={}",
            program.max_batch
        ));
    }
    if inputs.len() != program.inputs.len() {
        return Err(format!(
            "{} inputs given, {} expected",
            inputs.len(),
            program.inputs.len()
        ));
    }
    for (d, x) in program.inputs.iter().zip(inputs) {
        if x.len() != d.elements_per_image() * batch {
            return Err(format!("input `{}` has {} values", d.name, x.len()));
        }
    }
    let dtype = program.dtype;
    let mut arena = Arena {
        program,
        data: vec![f32::NAN; program.arena_bytes / dtype.size()],
    };
    let mut outputs: Vec<Vec<f32>> = program
        .outputs
        .iter()
        .map(|d| vec![f32::NAN; d.elements_per_image() * batch])
        .collect();
    let weights = |w: &crate::program::WeightRef| {
        program
            .weight_f32(w)
            .ok_or_else(|| "weight reference out of range".to_owned())
    };
    for step in &program.steps {
        match step {
            Step::CastIn { input, dst, map } => {
                let base = arena.base(*dst) as i64;
                let x = inputs[*input];
                for_each(map, batch, |d, a, _| {
                    arena.data[(base + d) as usize] = round_to(dtype, x[a as usize]);
                });
            }
            Step::CastInNhwc {
                input,
                dst,
                channels,
                hw,
            } => {
                let base = arena.base(*dst);
                let cpad = program.values[*dst].shape[1];
                let x = inputs[*input];
                for i in 0..batch * hw {
                    let (n, p) = (i / hw, i % hw);
                    for ch in 0..cpad {
                        let v = if ch < *channels {
                            x[(n * channels + ch) * hw + p]
                        } else {
                            0.0
                        };
                        arena.data[base + i * cpad + ch] = round_to(dtype, v);
                    }
                }
            }
            Step::Gemm(g) => {
                let w = weights(&g.weights)?;
                let bias = match &g.bias {
                    Some(b) => weights(b)?,
                    None => vec![0.0; g.n],
                };
                let (sb, db) = (arena.base(g.src), arena.base(g.dst));
                for img in 0..batch {
                    for ni in 0..g.n {
                        // FP32 sums, as cuBLASLt accumulates; the store rounds to the type.
                        let row = &w[ni * g.k..(ni + 1) * g.k];
                        let x = &arena.data[sb + img * g.k..sb + (img + 1) * g.k];
                        let sum: f32 =
                            row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + bias[ni];
                        arena.data[db + img * g.n + ni] =
                            round_to(dtype, unary_f(&g.activation, sum));
                    }
                }
            }
            Step::CastInSpaceToDepth(s) => {
                let base = arena.base(s.dst);
                let [_, cpad, rows, cols] = program.values[s.dst].shape[..] else {
                    return Err("space-to-depth value is not 4-D".into());
                };
                let x = inputs[s.input];
                let (c, h, w, shift) = (s.channels, s.height as i64, s.width as i64, s.shift);
                for n in 0..batch {
                    for b in 0..rows {
                        for col in 0..cols {
                            let pixel = base + ((n * rows + b) * cols + col) * cpad;
                            for ch in 0..cpad {
                                let (q, ci) = (ch / c, ch % c);
                                let y = 2 * b as i64 + (q / 2) as i64 - shift[0] as i64;
                                let xx = 2 * col as i64 + (q % 2) as i64 - shift[1] as i64;
                                let inside = q < 4 && (0..h).contains(&y) && (0..w).contains(&xx);
                                let v = if inside {
                                    x[((n * c + ci) as i64 * h + y) as usize * w as usize
                                        + xx as usize]
                                } else {
                                    0.0
                                };
                                arena.data[pixel + ch] = round_to(dtype, v);
                            }
                        }
                    }
                }
            }
            Step::CastOut { src, output, map } => {
                let base = arena.base(*src) as i64;
                let y = &mut outputs[*output];
                for_each(map, batch, |d, a, _| {
                    y[d as usize] = arena.data[(base + a) as usize];
                });
            }
            Step::Copy { src, dst, map } => {
                let (sb, db) = (arena.base(*src) as i64, arena.base(*dst) as i64);
                let mut writes = Vec::new();
                // Copies move 16 bytes per index where the map allows (as the kernels do).
                let width = (16 / dtype.size()) as i64;
                let walk = map.walk(batch);
                match walk.vectorised(width as usize, map.dst_offset, map.a_offset) {
                    Some((v, d_off, a_off)) => {
                        let vector = Map {
                            dims: v.dims,
                            dst: v.dst,
                            a: v.a,
                            b: v.b,
                            dst_offset: d_off,
                            a_offset: a_off,
                            b_offset: 0,
                        };
                        for_each_walked(&vector, |d, a, _| {
                            for e in 0..width {
                                writes.push((db + d * width + e, sb + a * width + e));
                            }
                        });
                    }
                    None => for_each(map, batch, |d, a, _| writes.push((db + d, sb + a))),
                }
                for (d, a) in writes {
                    arena.data[d as usize] = arena.data[a as usize];
                }
            }
            Step::Unary { src, dst, f, map } => {
                let (sb, db) = (arena.base(*src) as i64, arena.base(*dst) as i64);
                let mut writes = Vec::new();
                for_each(map, batch, |d, a, _| writes.push((db + d, sb + a)));
                for (d, a) in writes {
                    arena.data[d as usize] = round_to(dtype, unary_f(f, arena.data[a as usize]));
                }
            }
            Step::Binary { a, b, dst, op, map } => {
                let load = |o: &Operand| -> Result<(Option<i64>, Vec<f32>), String> {
                    Ok(match o {
                        Operand::Value(v) => (Some(arena.base(*v) as i64), Vec::new()),
                        Operand::Weight(w) => (None, weights(w)?),
                    })
                };
                let (ab, aw) = load(a)?;
                let (bb, bw) = load(b)?;
                let db = arena.base(*dst) as i64;
                let mut writes = Vec::new();
                for_each(map, batch, |d, ia, ib| writes.push((db + d, ia, ib)));
                for (d, ia, ib) in writes {
                    let x = match ab {
                        Some(base) => arena.data[(base + ia) as usize],
                        None => aw[ia as usize],
                    };
                    let y = match bb {
                        Some(base) => arena.data[(base + ib) as usize],
                        None => bw[ib as usize],
                    };
                    arena.data[d as usize] = round_to(dtype, binary_f(*op, x, y));
                }
            }
            Step::Pad {
                src,
                dst,
                map,
                value,
            } => {
                let (sb, db) = (arena.base(*src) as i64, arena.base(*dst) as i64);
                let mut dims = map.map.dims.clone();
                dims[0] = batch;
                let count: usize = dims.iter().product();
                for i in 0..count {
                    let (mut d, mut a, mut inside) = (0i64, 0i64, true);
                    let mut rest = i;
                    for k in (0..dims.len()).rev() {
                        let c = rest % dims[k];
                        rest /= dims[k];
                        d += c as i64 * map.map.dst[k];
                        let s = c as i64 - map.begin[k] as i64;
                        let extent = if k == 0 { batch } else { map.src_dims[k] } as i64;
                        if s < 0 || s >= extent {
                            inside = false;
                        }
                        a += s * map.map.a[k];
                    }
                    arena.data[(db + d) as usize] = if inside {
                        arena.data[(sb + a) as usize]
                    } else {
                        round_to(dtype, *value)
                    };
                }
            }
            Step::Conv {
                src,
                dst,
                residual,
                residual_mode,
                activation,
                geom,
                weights: w,
                bias,
                ..
            } => {
                let w = weights(w)?;
                let bias = match bias {
                    Some(b) => weights(b)?,
                    None => vec![0.0; geom.out_channels],
                };
                let acc = conv_forward(&arena, *src, geom, &w, batch);
                let db = arena.base(*dst);
                let zb = residual.map(|r| arena.base(r));
                for (i, v) in acc.iter().enumerate() {
                    let k = i % geom.out_channels;
                    let mut v = v + bias[k];
                    let z = zb.map_or(0.0, |zb| arena.data[zb + i]);
                    if *residual_mode == Residual::BeforeActivation {
                        v += z;
                    }
                    v = unary_f(activation, v);
                    if *residual_mode == Residual::AfterActivation {
                        v += z;
                    }
                    arena.data[db + i] = round_to(dtype, v);
                }
            }
            Step::ConvTranspose {
                src,
                dst,
                activation,
                geom,
                weights: w,
                bias,
                ..
            } => {
                let w = weights(w)?;
                let bias = match bias {
                    Some(b) => weights(b)?,
                    None => vec![0.0; geom.in_channels],
                };
                let out = conv_backward_data(&arena, *src, geom, &w, batch);
                let db = arena.base(*dst);
                for (i, v) in out.iter().enumerate() {
                    let c = i % geom.in_channels;
                    arena.data[db + i] = round_to(dtype, unary_f(activation, v + bias[c]));
                }
            }
            Step::Pool { src, dst, geom } => {
                let out = pool(&arena, *src, geom, batch);
                let db = arena.base(*dst);
                for (i, v) in out.into_iter().enumerate() {
                    arena.data[db + i] = round_to(dtype, v);
                }
            }
            Step::GlobalPool {
                src,
                dst,
                max,
                hw,
                channels,
            } => {
                let (sb, db) = (arena.base(*src), arena.base(*dst));
                for n in 0..batch {
                    for c in 0..*channels {
                        let mut acc = if *max { f32::NEG_INFINITY } else { 0.0 };
                        for p in 0..*hw {
                            let x = arena.data[sb + (n * hw + p) * channels + c];
                            acc = if *max { acc.max(x) } else { acc + x };
                        }
                        if !*max {
                            acc /= *hw as f32;
                        }
                        arena.data[db + n * channels + c] = round_to(dtype, acc);
                    }
                }
            }
            Step::Reduce {
                src,
                dst,
                kind,
                map,
            } => {
                let (sb, db) = (arena.base(*src) as i64, arena.base(*dst) as i64);
                let groups = offsets(&map.kept, &map.kept_src, Some(batch));
                let outs = offsets(&map.kept, &map.kept_dst, Some(batch));
                let members = offsets(&map.reduced, &map.reduced_src, None);
                for (g, o) in groups.iter().zip(&outs) {
                    let xs: Vec<f32> = members
                        .iter()
                        .map(|m| arena.data[(sb + g + m) as usize])
                        .collect();
                    arena.data[(db + o) as usize] = round_to(dtype, reduce_f(*kind, &xs));
                }
            }
            Step::Softmax { src, dst, log, map } => {
                let (sb, db) = (arena.base(*src) as i64, arena.base(*dst) as i64);
                let groups = offsets(&map.kept, &map.kept_src, Some(batch));
                let outs = offsets(&map.kept, &map.kept_dst, Some(batch));
                let members = offsets(&map.reduced, &map.reduced_src, None);
                let out_members = offsets(&map.reduced, &map.reduced_dst, None);
                for (g, o) in groups.iter().zip(&outs) {
                    let xs: Vec<f32> = members
                        .iter()
                        .map(|m| arena.data[(sb + g + m) as usize])
                        .collect();
                    let max = xs.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x));
                    let sum: f32 = xs.iter().map(|x| (x - max).exp()).sum();
                    for (x, m) in xs.iter().zip(&out_members) {
                        let v = if *log {
                            x - max - sum.ln()
                        } else {
                            (x - max).exp() / sum
                        };
                        arena.data[(db + o + m) as usize] = round_to(dtype, v);
                    }
                }
            }
        }
    }
    Ok(outputs)
}

pub fn reduce_f(kind: i32, xs: &[f32]) -> f32 {
    let n = xs.len() as f32;
    match kind {
        reduce::SUM => xs.iter().sum(),
        reduce::MEAN => xs.iter().sum::<f32>() / n,
        reduce::MAX => xs.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x)),
        reduce::MIN => xs.iter().fold(f32::INFINITY, |m, x| m.min(*x)),
        reduce::PROD => xs.iter().product(),
        reduce::L1 => xs.iter().map(|x| x.abs()).sum(),
        reduce::L2 => xs.iter().map(|x| x * x).sum::<f32>().sqrt(),
        reduce::LOG_SUM => xs.iter().sum::<f32>().ln(),
        reduce::LOG_SUM_EXP => {
            let m = xs.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x));
            m + xs.iter().map(|x| (x - m).exp()).sum::<f32>().ln()
        }
        reduce::SUM_SQUARE => xs.iter().map(|x| x * x).sum(),
        _ => f32::NAN,
    }
}

/// NHWC convolution with KRSC filters: the f32 sums, before bias and epilogue.
fn conv_forward(arena: &Arena, src: usize, g: &ConvGeom, w: &[f32], batch: usize) -> Vec<f32> {
    let xb = arena.base(src);
    let x = &arena.data;
    let [h, wd] = g.input;
    let [oh, ow] = g.output;
    let (cin, k) = (g.in_channels, g.out_channels);
    let (cg, kg) = (cin / g.groups, k / g.groups);
    let mut out = vec![0f32; batch * oh * ow * k];
    for n in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for ko in 0..k {
                    let group = ko / kg;
                    let mut acc = 0f32;
                    for r in 0..g.kernel[0] {
                        let iy = (oy * g.stride[0] + r * g.dilation[0]) as i64 - g.pad[0] as i64;
                        if iy < 0 || iy >= h as i64 {
                            continue;
                        }
                        for s in 0..g.kernel[1] {
                            let ix =
                                (ox * g.stride[1] + s * g.dilation[1]) as i64 - g.pad[1] as i64;
                            if ix < 0 || ix >= wd as i64 {
                                continue;
                            }
                            let xo =
                                xb + ((n * h + iy as usize) * wd + ix as usize) * cin + group * cg;
                            let wo = ((ko * g.kernel[0] + r) * g.kernel[1] + s) * cg;
                            for c in 0..cg {
                                acc += x[xo + c] * w[wo + c];
                            }
                        }
                    }
                    out[((n * oh + oy) * ow + ox) * k + ko] = acc;
                }
            }
        }
    }
    out
}

/// The transposed convolution as the backward-data pass of `g` (reads `src` = the forward
/// convolution's output shape, returns its input shape, NHWC).
fn conv_backward_data(
    arena: &Arena,
    src: usize,
    g: &ConvGeom,
    w: &[f32],
    batch: usize,
) -> Vec<f32> {
    let yb = arena.base(src);
    let y = &arena.data;
    let [h, wd] = g.input;
    let [oh, ow] = g.output;
    let (c, k) = (g.in_channels, g.out_channels);
    let (cg, kg) = (c / g.groups, k / g.groups);
    let mut out = vec![0f32; batch * h * wd * c];
    for n in 0..batch {
        for iy in 0..h {
            for ix in 0..wd {
                for ci in 0..c {
                    let group = ci / cg;
                    let cl = ci % cg;
                    let mut acc = 0f32;
                    for r in 0..g.kernel[0] {
                        let ty = iy as i64 + g.pad[0] as i64 - (r * g.dilation[0]) as i64;
                        if ty < 0 || ty % g.stride[0] as i64 != 0 {
                            continue;
                        }
                        let oy = (ty / g.stride[0] as i64) as usize;
                        if oy >= oh {
                            continue;
                        }
                        for s in 0..g.kernel[1] {
                            let tx = ix as i64 + g.pad[1] as i64 - (s * g.dilation[1]) as i64;
                            if tx < 0 || tx % g.stride[1] as i64 != 0 {
                                continue;
                            }
                            let ox = (tx / g.stride[1] as i64) as usize;
                            if ox >= ow {
                                continue;
                            }
                            for kl in 0..kg {
                                let ko = group * kg + kl;
                                acc += y[yb + ((n * oh + oy) * ow + ox) * k + ko]
                                    * w[((ko * g.kernel[0] + r) * g.kernel[1] + s) * cg + cl];
                            }
                        }
                    }
                    out[((n * h + iy) * wd + ix) * c + ci] = acc;
                }
            }
        }
    }
    out
}

fn pool(arena: &Arena, src: usize, g: &PoolGeom, batch: usize) -> Vec<f32> {
    let xb = arena.base(src);
    let x = &arena.data;
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let c = g.channels;
    let mut out = vec![0f32; batch * oh * ow * c];
    for n in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut acc = if g.max { f32::NEG_INFINITY } else { 0.0 };
                    let mut count = 0usize;
                    for r in 0..g.kernel[0] {
                        let iy =
                            (oy * g.stride[0] + r * g.dilation[0]) as i64 - g.pad_begin[0] as i64;
                        for s in 0..g.kernel[1] {
                            let ix = (ox * g.stride[1] + s * g.dilation[1]) as i64
                                - g.pad_begin[1] as i64;
                            let inside = iy >= 0 && iy < h as i64 && ix >= 0 && ix < w as i64;
                            let in_padding = iy >= -(g.pad_begin[0] as i64)
                                && iy < (h + g.pad_end[0]) as i64
                                && ix >= -(g.pad_begin[1] as i64)
                                && ix < (w + g.pad_end[1]) as i64;
                            if inside {
                                let v = x[xb + ((n * h + iy as usize) * w + ix as usize) * c + ch];
                                acc = if g.max { acc.max(v) } else { acc + v };
                                count += 1;
                            } else if in_padding && g.count_include_pad {
                                count += 1;
                            }
                        }
                    }
                    if !g.max {
                        acc /= count.max(1) as f32;
                    }
                    out[((n * oh + oy) * ow + ox) * c + ch] = acc;
                }
            }
        }
    }
    out
}
