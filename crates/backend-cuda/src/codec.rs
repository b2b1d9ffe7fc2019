//! The program's binary form inside a plan (section `cuda.program`). Little-endian, every list
//! length-prefixed; decoding checks every length and index, so a damaged section is an error, not a
//! panic or an out-of-range access later.

use tao_engine::backend::IoDesc;

use crate::program::{
    ConvChoice, ConvGeom, DType, GemmStep, Layout, MAX_RANK, Map, Operand, PadMap, PoolGeom,
    Program, ReduceMap, Residual, S2D_MAX_CHANNELS, SpaceToDepthInput, Step, Unary, Value,
    WeightRef, unary,
};

/// Bumped whenever the encoding changes.
const VERSION: u32 = 2;

#[derive(Default)]
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn usize(&mut self, v: usize) {
        self.u64(v as u64);
    }
    fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    fn str(&mut self, s: &str) {
        self.usize(s.len());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn usizes(&mut self, v: &[usize]) {
        self.usize(v.len());
        for x in v {
            self.usize(*x);
        }
    }
    fn i64s(&mut self, v: &[i64]) {
        self.usize(v.len());
        for x in v {
            self.i64(*x);
        }
    }
    fn pair(&mut self, v: [usize; 2]) {
        self.usize(v[0]);
        self.usize(v[1]);
    }
    fn dtype(&mut self, d: DType) {
        self.u8(match d {
            DType::F32 => 0,
            DType::F16 => 1,
        });
    }
    fn weight(&mut self, w: &WeightRef) {
        self.usize(w.offset);
        self.usize(w.len);
        self.dtype(w.dtype);
    }
    fn opt_weight(&mut self, w: &Option<WeightRef>) {
        self.bool(w.is_some());
        if let Some(w) = w {
            self.weight(w);
        }
    }
    fn unary(&mut self, f: &Unary) {
        self.i32(f.code);
        self.f32(f.p0);
        self.f32(f.p1);
    }
    fn map(&mut self, m: &Map) {
        self.usizes(&m.dims);
        self.i64s(&m.dst);
        self.i64s(&m.a);
        self.i64s(&m.b);
        self.i64(m.dst_offset);
        self.i64(m.a_offset);
        self.i64(m.b_offset);
    }
    fn reduce_map(&mut self, m: &ReduceMap) {
        self.usizes(&m.kept);
        self.i64s(&m.kept_src);
        self.i64s(&m.kept_dst);
        self.usizes(&m.reduced);
        self.i64s(&m.reduced_src);
        self.i64s(&m.reduced_dst);
    }
    fn geom(&mut self, g: &ConvGeom) {
        self.usize(g.in_channels);
        self.usize(g.out_channels);
        self.usize(g.groups);
        self.pair(g.kernel);
        self.pair(g.stride);
        self.pair(g.dilation);
        self.pair(g.pad);
        self.pair(g.input);
        self.pair(g.output);
    }
    fn choice(&mut self, c: &Option<ConvChoice>) {
        self.bool(c.is_some());
        if let Some(c) = c {
            self.u32(c.algo);
            self.u32(c.math);
            self.bool(c.fused);
            self.bool(c.bias_half);
            self.u64(c.workspace);
            self.f32(c.time_us);
        }
    }
    fn operand(&mut self, o: &Operand) {
        match o {
            Operand::Value(v) => {
                self.u8(0);
                self.usize(*v);
            }
            Operand::Weight(w) => {
                self.u8(1);
                self.weight(w);
            }
        }
    }
}

/// Encodes everything but the weight blob (which goes into its own section).
pub fn encode(p: &Program) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(VERSION);
    w.dtype(p.dtype);
    w.usize(p.max_batch);
    w.usize(p.arena_bytes);
    w.usize(p.weights.len());
    for io in [&p.inputs, &p.outputs] {
        w.usize(io.len());
        for d in io {
            w.str(&d.name);
            w.usizes(&d.shape);
        }
    }
    w.usize(p.values.len());
    for v in &p.values {
        w.str(&v.name);
        w.usizes(&v.shape);
        w.u8(match v.layout {
            Layout::RowMajor => 0,
            Layout::Nhwc => 1,
        });
        w.usize(v.offset);
    }
    w.usize(p.steps.len());
    for s in &p.steps {
        match s {
            Step::CastIn { input, dst, map } => {
                w.u8(0);
                w.usize(*input);
                w.usize(*dst);
                w.map(map);
            }
            Step::CastInNhwc {
                input,
                dst,
                channels,
                hw,
            } => {
                w.u8(12);
                w.usize(*input);
                w.usize(*dst);
                w.usize(*channels);
                w.usize(*hw);
            }
            Step::Gemm(g) => {
                w.u8(14);
                w.str(&g.node);
                for v in [g.src, g.dst, g.k, g.n] {
                    w.usize(v);
                }
                w.weight(&g.weights);
                w.bool(g.bias.is_some());
                if let Some(b) = &g.bias {
                    w.weight(b);
                }
                w.unary(&g.activation);
            }
            Step::CastInSpaceToDepth(s) => {
                w.u8(13);
                for v in [
                    s.input, s.dst, s.channels, s.height, s.width, s.shift[0], s.shift[1],
                ] {
                    w.usize(v);
                }
            }
            Step::CastOut { src, output, map } => {
                w.u8(1);
                w.usize(*src);
                w.usize(*output);
                w.map(map);
            }
            Step::Copy { src, dst, map } => {
                w.u8(2);
                w.usize(*src);
                w.usize(*dst);
                w.map(map);
            }
            Step::Pad {
                src,
                dst,
                map,
                value,
            } => {
                w.u8(3);
                w.usize(*src);
                w.usize(*dst);
                w.map(&map.map);
                w.usizes(&map.src_dims);
                w.usizes(&map.begin);
                w.f32(*value);
            }
            Step::Conv {
                node,
                src,
                dst,
                residual,
                residual_mode,
                activation,
                geom,
                weights,
                bias,
                bias_half,
                choice,
            } => {
                w.u8(4);
                w.str(node);
                w.usize(*src);
                w.usize(*dst);
                w.bool(residual.is_some());
                w.usize(residual.unwrap_or(0));
                w.u8(match residual_mode {
                    Residual::None => 0,
                    Residual::BeforeActivation => 1,
                    Residual::AfterActivation => 2,
                });
                w.unary(activation);
                w.geom(geom);
                w.weight(weights);
                w.opt_weight(bias);
                w.opt_weight(bias_half);
                w.choice(choice);
            }
            Step::ConvTranspose {
                node,
                src,
                dst,
                activation,
                geom,
                weights,
                bias,
                choice,
            } => {
                w.u8(5);
                w.str(node);
                w.usize(*src);
                w.usize(*dst);
                w.unary(activation);
                w.geom(geom);
                w.weight(weights);
                w.opt_weight(bias);
                w.choice(choice);
            }
            Step::Pool { src, dst, geom } => {
                w.u8(6);
                w.usize(*src);
                w.usize(*dst);
                w.bool(geom.max);
                w.bool(geom.count_include_pad);
                w.pair(geom.kernel);
                w.pair(geom.stride);
                w.pair(geom.dilation);
                w.pair(geom.pad_begin);
                w.pair(geom.pad_end);
                w.pair(geom.input);
                w.pair(geom.output);
                w.usize(geom.channels);
            }
            Step::GlobalPool {
                src,
                dst,
                max,
                hw,
                channels,
            } => {
                w.u8(7);
                w.usize(*src);
                w.usize(*dst);
                w.bool(*max);
                w.usize(*hw);
                w.usize(*channels);
            }
            Step::Unary { src, dst, f, map } => {
                w.u8(8);
                w.usize(*src);
                w.usize(*dst);
                w.unary(f);
                w.map(map);
            }
            Step::Binary { a, b, dst, op, map } => {
                w.u8(9);
                w.operand(a);
                w.operand(b);
                w.usize(*dst);
                w.i32(*op);
                w.map(map);
            }
            Step::Reduce {
                src,
                dst,
                kind,
                map,
            } => {
                w.u8(10);
                w.usize(*src);
                w.usize(*dst);
                w.i32(*kind);
                w.reduce_map(map);
            }
            Step::Softmax { src, dst, log, map } => {
                w.u8(11);
                w.usize(*src);
                w.usize(*dst);
                w.bool(*log);
                w.reduce_map(map);
            }
        }
    }
    w.out
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

type R<T> = Result<T, String>;

impl Reader<'_> {
    fn take(&mut self, n: usize) -> R<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("truncated at byte {} (needed {n} more)", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> R<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self) -> R<i32> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> R<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn usize(&mut self) -> R<usize> {
        usize::try_from(self.u64()?).map_err(|_| "a size does not fit this machine".to_owned())
    }
    /// A count of items that each take at least `min_bytes`: bounded by what is left.
    fn count(&mut self, min_bytes: usize) -> R<usize> {
        let n = self.usize()?;
        if n.saturating_mul(min_bytes.max(1)) > self.data.len() - self.pos {
            return Err(format!("a list of {n} items is longer than the section"));
        }
        Ok(n)
    }
    fn i64(&mut self) -> R<i64> {
        Ok(self.u64()? as i64)
    }
    fn f32(&mut self) -> R<f32> {
        Ok(f32::from_bits(self.u32()?))
    }
    fn bool(&mut self) -> R<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("bad flag {v}")),
        }
    }
    fn str(&mut self) -> R<String> {
        let n = self.count(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".to_owned())
    }
    fn usizes(&mut self) -> R<Vec<usize>> {
        let n = self.count(8)?;
        (0..n).map(|_| self.usize()).collect()
    }
    fn i64s(&mut self) -> R<Vec<i64>> {
        let n = self.count(8)?;
        (0..n).map(|_| self.i64()).collect()
    }
    fn pair(&mut self) -> R<[usize; 2]> {
        Ok([self.usize()?, self.usize()?])
    }
    fn dtype(&mut self) -> R<DType> {
        match self.u8()? {
            0 => Ok(DType::F32),
            1 => Ok(DType::F16),
            v => Err(format!("bad dtype {v}")),
        }
    }
    fn weight(&mut self) -> R<WeightRef> {
        Ok(WeightRef {
            offset: self.usize()?,
            len: self.usize()?,
            dtype: self.dtype()?,
        })
    }
    fn opt_weight(&mut self) -> R<Option<WeightRef>> {
        Ok(if self.bool()? {
            Some(self.weight()?)
        } else {
            None
        })
    }
    fn unary(&mut self) -> R<Unary> {
        Ok(Unary {
            code: self.i32()?,
            p0: self.f32()?,
            p1: self.f32()?,
        })
    }
    fn map(&mut self) -> R<Map> {
        Ok(Map {
            dims: self.usizes()?,
            dst: self.i64s()?,
            a: self.i64s()?,
            b: self.i64s()?,
            dst_offset: self.i64()?,
            a_offset: self.i64()?,
            b_offset: self.i64()?,
        })
    }
    fn reduce_map(&mut self) -> R<ReduceMap> {
        Ok(ReduceMap {
            kept: self.usizes()?,
            kept_src: self.i64s()?,
            kept_dst: self.i64s()?,
            reduced: self.usizes()?,
            reduced_src: self.i64s()?,
            reduced_dst: self.i64s()?,
        })
    }
    fn geom(&mut self) -> R<ConvGeom> {
        Ok(ConvGeom {
            in_channels: self.usize()?,
            out_channels: self.usize()?,
            groups: self.usize()?,
            kernel: self.pair()?,
            stride: self.pair()?,
            dilation: self.pair()?,
            pad: self.pair()?,
            input: self.pair()?,
            output: self.pair()?,
        })
    }
    fn choice(&mut self) -> R<Option<ConvChoice>> {
        if !self.bool()? {
            return Ok(None);
        }
        Ok(Some(ConvChoice {
            algo: self.u32()?,
            math: self.u32()?,
            fused: self.bool()?,
            bias_half: self.bool()?,
            workspace: self.u64()?,
            time_us: self.f32()?,
        }))
    }
    fn operand(&mut self) -> R<Operand> {
        match self.u8()? {
            0 => Ok(Operand::Value(self.usize()?)),
            1 => Ok(Operand::Weight(self.weight()?)),
            v => Err(format!("bad operand tag {v}")),
        }
    }
}

/// Decodes a program and attaches `weights`; then checks it ([`validate`]).
pub fn decode(data: &[u8], weights: Vec<u8>) -> Result<Program, String> {
    let mut r = Reader { data, pos: 0 };
    let version = r.u32()?;
    if version != VERSION {
        return Err(format!(
            "program encoding {version}, this build reads {VERSION}"
        ));
    }
    let dtype = r.dtype()?;
    let max_batch = r.usize()?;
    let arena_bytes = r.usize()?;
    let weights_len = r.usize()?;
    if weights_len != weights.len() {
        return Err(format!(
            "the weight section has {} bytes, the program expects {weights_len}",
            weights.len()
        ));
    }
    let mut io = [Vec::new(), Vec::new()];
    for list in io.iter_mut() {
        let n = r.count(16)?;
        for _ in 0..n {
            list.push(IoDesc {
                name: r.str()?,
                shape: r.usizes()?,
            });
        }
    }
    let [inputs, outputs] = io;
    let n = r.count(25)?;
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str()?;
        let shape = r.usizes()?;
        let layout = match r.u8()? {
            0 => Layout::RowMajor,
            1 => Layout::Nhwc,
            v => return Err(format!("bad layout {v}")),
        };
        let offset = r.usize()?;
        values.push(Value {
            name,
            shape,
            layout,
            offset,
        });
    }
    let n = r.count(9)?;
    let mut steps = Vec::with_capacity(n);
    for _ in 0..n {
        let step = match r.u8()? {
            0 => Step::CastIn {
                input: r.usize()?,
                dst: r.usize()?,
                map: r.map()?,
            },
            1 => Step::CastOut {
                src: r.usize()?,
                output: r.usize()?,
                map: r.map()?,
            },
            2 => Step::Copy {
                src: r.usize()?,
                dst: r.usize()?,
                map: r.map()?,
            },
            3 => Step::Pad {
                src: r.usize()?,
                dst: r.usize()?,
                map: PadMap {
                    map: r.map()?,
                    src_dims: r.usizes()?,
                    begin: r.usizes()?,
                },
                value: r.f32()?,
            },
            4 => {
                let node = r.str()?;
                let src = r.usize()?;
                let dst = r.usize()?;
                let has_residual = r.bool()?;
                let residual = r.usize()?;
                let residual_mode = match r.u8()? {
                    0 => Residual::None,
                    1 => Residual::BeforeActivation,
                    2 => Residual::AfterActivation,
                    v => return Err(format!("bad residual mode {v}")),
                };
                Step::Conv {
                    node,
                    src,
                    dst,
                    residual: has_residual.then_some(residual),
                    residual_mode,
                    activation: r.unary()?,
                    geom: r.geom()?,
                    weights: r.weight()?,
                    bias: r.opt_weight()?,
                    bias_half: r.opt_weight()?,
                    choice: r.choice()?,
                }
            }
            5 => Step::ConvTranspose {
                node: r.str()?,
                src: r.usize()?,
                dst: r.usize()?,
                activation: r.unary()?,
                geom: r.geom()?,
                weights: r.weight()?,
                bias: r.opt_weight()?,
                choice: r.choice()?,
            },
            6 => Step::Pool {
                src: r.usize()?,
                dst: r.usize()?,
                geom: PoolGeom {
                    max: r.bool()?,
                    count_include_pad: r.bool()?,
                    kernel: r.pair()?,
                    stride: r.pair()?,
                    dilation: r.pair()?,
                    pad_begin: r.pair()?,
                    pad_end: r.pair()?,
                    input: r.pair()?,
                    output: r.pair()?,
                    channels: r.usize()?,
                },
            },
            7 => Step::GlobalPool {
                src: r.usize()?,
                dst: r.usize()?,
                max: r.bool()?,
                hw: r.usize()?,
                channels: r.usize()?,
            },
            8 => Step::Unary {
                src: r.usize()?,
                dst: r.usize()?,
                f: r.unary()?,
                map: r.map()?,
            },
            9 => Step::Binary {
                a: r.operand()?,
                b: r.operand()?,
                dst: r.usize()?,
                op: r.i32()?,
                map: r.map()?,
            },
            10 => Step::Reduce {
                src: r.usize()?,
                dst: r.usize()?,
                kind: r.i32()?,
                map: r.reduce_map()?,
            },
            11 => Step::Softmax {
                src: r.usize()?,
                dst: r.usize()?,
                log: r.bool()?,
                map: r.reduce_map()?,
            },
            12 => Step::CastInNhwc {
                input: r.usize()?,
                dst: r.usize()?,
                channels: r.usize()?,
                hw: r.usize()?,
            },
            13 => Step::CastInSpaceToDepth(SpaceToDepthInput {
                input: r.usize()?,
                dst: r.usize()?,
                channels: r.usize()?,
                height: r.usize()?,
                width: r.usize()?,
                shift: [r.usize()?, r.usize()?],
            }),
            14 => Step::Gemm(GemmStep {
                node: r.str()?,
                src: r.usize()?,
                dst: r.usize()?,
                k: r.usize()?,
                n: r.usize()?,
                weights: r.weight()?,
                bias: if r.bool()? { Some(r.weight()?) } else { None },
                activation: r.unary()?,
            }),
            t => return Err(format!("bad step tag {t}")),
        };
        steps.push(step);
    }
    if r.pos != data.len() {
        return Err(format!("{} bytes after the program", data.len() - r.pos));
    }
    let program = Program {
        dtype,
        max_batch,
        values,
        steps,
        inputs,
        outputs,
        arena_bytes,
        weights,
    };
    validate(&program)?;
    Ok(program)
}

/// Checks that every index a step will compute stays inside its buffers, so a program read from a
/// file can never make a kernel read or write out of bounds. Uses the largest batch.
pub fn validate(p: &Program) -> Result<(), String> {
    if p.max_batch == 0 || p.max_batch > 1 << 20 {
        return Err(format!("max batch {} is out of range", p.max_batch));
    }
    for d in p.inputs.iter().chain(&p.outputs) {
        if d.shape.len() >= MAX_RANK || checked_product(&d.shape, p.max_batch).is_none() {
            return Err(format!(
                "input or output `{}` has shape {:?}",
                d.name, d.shape
            ));
        }
    }
    let dsize = p.dtype.size();
    for (i, v) in p.values.iter().enumerate() {
        if v.shape.is_empty() || v.shape.len() > MAX_RANK || v.shape[0] != 1 {
            return Err(format!("value {i} `{}` has shape {:?}", v.name, v.shape));
        }
        if v.layout == Layout::Nhwc && v.shape.len() != 4 {
            return Err(format!("value {i} `{}` is NHWC but not 4-D", v.name));
        }
        let bytes = v
            .shape
            .iter()
            .try_fold(dsize.saturating_mul(p.max_batch), |acc, &d| {
                acc.checked_mul(d)
            })
            .ok_or_else(|| format!("value {i} `{}` is too large", v.name))?;
        if v.offset
            .checked_add(bytes)
            .is_none_or(|end| end > p.arena_bytes)
            || !v.offset.is_multiple_of(16)
        {
            return Err(format!("value {i} `{}` lies outside the arena", v.name));
        }
    }
    let value = |v: usize| -> Result<&Value, String> {
        p.values
            .get(v)
            .ok_or_else(|| format!("value index {v} is out of range"))
    };
    let weight = |w: &WeightRef| -> Result<(), String> {
        let end = w
            .len
            .checked_mul(w.dtype.size())
            .and_then(|b| b.checked_add(w.offset));
        if end.is_none_or(|e| e > p.weights.len()) || !w.offset.is_multiple_of(16) {
            return Err(format!(
                "a weight reference ({} at {}) lies outside the weights",
                w.len, w.offset
            ));
        }
        Ok(())
    };
    // Largest element index an affine map reaches, per operand, for the largest batch.
    let reach = |dims: &[usize], strides: &[i64], offset: i64| -> Result<(i64, i64), String> {
        if dims.len() != strides.len() || dims.len() > MAX_RANK || dims.is_empty() {
            return Err("an index map's rank does not match".to_owned());
        }
        if checked_product(&dims[1..], p.max_batch).is_none() {
            return Err("an index map is too large".to_owned());
        }
        let mut batched = dims.to_vec();
        batched[0] = p.max_batch;
        let (lo, hi) = reach_plain(&batched, strides)?;
        let lo = lo.checked_add(offset);
        let hi = hi.checked_add(offset);
        match (lo, hi) {
            (Some(lo), Some(hi)) => Ok((lo, hi)),
            _ => Err("an index map overflows".to_owned()),
        }
    };
    let within = |what: &str, (lo, hi): (i64, i64), len: usize| -> Result<(), String> {
        if hi >= lo && (lo < 0 || hi >= len as i64) {
            return Err(format!(
                "{what} index map reaches [{lo}, {hi}] of {len} elements"
            ));
        }
        Ok(())
    };
    let elements = |v: &Value| v.per_image() * p.max_batch;
    for (s, step) in p.steps.iter().enumerate() {
        let at = |what: &str| format!("step {s} ({what})");
        for (v, _) in step.values() {
            value(v)?;
        }
        let check_map = |m: &Map,
                         dst: Option<usize>,
                         a: Option<usize>,
                         b: Option<usize>|
         -> Result<(), String> {
            if m.dims.first() != Some(&1) {
                return Err(format!(
                    "{}: the first dimension is not the batch",
                    at("map")
                ));
            }
            if let Some(d) = dst {
                within(&at("output"), reach(&m.dims, &m.dst, m.dst_offset)?, d)?;
            }
            if let Some(a) = a {
                within(&at("input"), reach(&m.dims, &m.a, m.a_offset)?, a)?;
            }
            if let Some(b) = b {
                within(&at("second input"), reach(&m.dims, &m.b, m.b_offset)?, b)?;
            }
            Ok(())
        };
        let operand_len = |o: &Operand| -> Result<usize, String> {
            match o {
                Operand::Value(v) => Ok(elements(value(*v)?)),
                Operand::Weight(w) => {
                    weight(w)?;
                    if w.dtype != p.dtype {
                        return Err(at("constant of the wrong type"));
                    }
                    // Constants are the same for every image.
                    Ok(w.len)
                }
            }
        };
        match step {
            Step::CastIn { input, dst, map } => {
                let desc = p.inputs.get(*input).ok_or_else(|| at("input index"))?;
                let n = desc.elements_per_image() * p.max_batch;
                check_map(map, Some(elements(value(*dst)?)), Some(n), None)?;
            }
            Step::CastInNhwc {
                input,
                dst,
                channels,
                hw,
            } => {
                let desc = p.inputs.get(*input).ok_or_else(|| at("input index"))?;
                let y = value(*dst)?;
                let fits = y.layout == Layout::Nhwc
                    && y.shape.len() == 4
                    && Some(y.shape[2] * y.shape[3]) == Some(*hw)
                    && *channels <= y.shape[1]
                    && channels.checked_mul(*hw) == Some(desc.elements_per_image());
                if !fits {
                    return Err(at("input conversion shapes"));
                }
            }
            Step::CastInSpaceToDepth(SpaceToDepthInput {
                input,
                dst,
                channels,
                height,
                width,
                shift,
            }) => {
                let desc = p.inputs.get(*input).ok_or_else(|| at("input index"))?;
                let y = value(*dst)?;
                let plane = height.checked_mul(*width);
                // The kernel stores whole 16-byte vectors and keeps the pixel in registers.
                let vector = 16 / p.dtype.size();
                let fits = y.layout == Layout::Nhwc
                    && y.shape.len() == 4
                    && y.shape[1] <= S2D_MAX_CHANNELS
                    && y.shape[1].is_multiple_of(vector)
                    && channels.checked_mul(4).is_some_and(|c4| c4 <= y.shape[1])
                    && plane.and_then(|hw| hw.checked_mul(*channels))
                        == Some(desc.elements_per_image())
                    && shift.iter().all(|&s| s <= 1);
                if !fits {
                    return Err(at("space-to-depth input conversion shapes"));
                }
            }
            Step::CastOut { src, output, map } => {
                let desc = p.outputs.get(*output).ok_or_else(|| at("output index"))?;
                let n = desc.elements_per_image() * p.max_batch;
                check_map(map, Some(n), Some(elements(value(*src)?)), None)?;
            }
            Step::Copy { src, dst, map } | Step::Unary { src, dst, map, .. } => {
                check_map(
                    map,
                    Some(elements(value(*dst)?)),
                    Some(elements(value(*src)?)),
                    None,
                )?;
            }
            Step::Pad { src, dst, map, .. } => {
                check_map(&map.map, Some(elements(value(*dst)?)), None, None)?;
                if map.src_dims.len() != map.map.dims.len() || map.begin.len() != map.map.dims.len()
                {
                    return Err(at("pad ranks"));
                }
                within(
                    &at("pad input"),
                    reach(&map.src_dims, &map.map.a, 0)?,
                    elements(value(*src)?),
                )?;
            }
            Step::Binary { a, b, dst, map, .. } => {
                let (la, lb) = (operand_len(a)?, operand_len(b)?);
                check_map(map, Some(elements(value(*dst)?)), Some(la), Some(lb))?;
            }
            Step::Reduce { src, dst, map, .. } | Step::Softmax { src, dst, map, .. } => {
                let n = map.kept.len();
                if map.kept_src.len() != n
                    || map.kept_dst.len() != n
                    || map.reduced.len() != map.reduced_src.len()
                    || map.reduced.len() != map.reduced_dst.len()
                    || map.reduced.len() > MAX_RANK
                    || map.kept.first() != Some(&1)
                {
                    return Err(at("reduction map ranks"));
                }
                let (klo, khi) = reach(&map.kept, &map.kept_src, 0)?;
                let (rlo, rhi) = reach_plain(&map.reduced, &map.reduced_src)?;
                within(
                    &at("reduction input"),
                    (klo + rlo, khi + rhi),
                    elements(value(*src)?),
                )?;
                let (klo, khi) = reach(&map.kept, &map.kept_dst, 0)?;
                let (rlo, rhi) = reach_plain(&map.reduced, &map.reduced_dst)?;
                within(
                    &at("reduction output"),
                    (klo + rlo, khi + rhi),
                    elements(value(*dst)?),
                )?;
            }
            Step::Conv {
                src,
                dst,
                residual,
                geom,
                weights,
                bias,
                bias_half,
                ..
            } => {
                check_conv(geom, value(*src)?, value(*dst)?, false).map_err(|e| at(&e))?;
                if let Some(r) = residual
                    && value(*r)?.shape != value(*dst)?.shape
                {
                    return Err(at("residual shape"));
                }
                check_weights(geom, weights, bias, p.dtype, weight).map_err(|e| at(&e))?;
                if let Some(b) = bias_half {
                    weight(b)?;
                    if b.len != geom.out_channels {
                        return Err(at("bias length"));
                    }
                }
            }
            Step::Gemm(g) => {
                let fits = value(g.src)?.per_image() == g.k
                    && value(g.dst)?.per_image() == g.n
                    && g.k.checked_mul(g.n) == Some(g.weights.len)
                    && g.weights.dtype == p.dtype
                    && g.bias.is_none_or(|b| b.len == g.n && b.dtype == p.dtype)
                    && matches!(g.activation.code, unary::IDENTITY | unary::RELU)
                    && i32::try_from(g.k.max(g.n).max(p.max_batch)).is_ok();
                if !fits {
                    return Err(at("matmul shapes"));
                }
                weight(&g.weights)?;
                if let Some(b) = &g.bias {
                    weight(b)?;
                }
            }
            Step::ConvTranspose {
                src,
                dst,
                geom,
                weights,
                bias,
                ..
            } => {
                // The backward-data convolution reads the forward conv's output and writes its input.
                check_conv(geom, value(*dst)?, value(*src)?, true).map_err(|e| at(&e))?;
                check_weights(geom, weights, &None, p.dtype, weight).map_err(|e| at(&e))?;
                if let Some(b) = bias {
                    weight(b)?;
                    if b.len != geom.in_channels || b.dtype != DType::F32 {
                        return Err(at("bias"));
                    }
                }
            }
            Step::Pool { src, dst, geom } => {
                let (x, y) = (value(*src)?, value(*dst)?);
                let sizes = [
                    geom.kernel[0],
                    geom.kernel[1],
                    geom.stride[0],
                    geom.stride[1],
                    geom.dilation[0],
                    geom.dilation[1],
                    geom.pad_begin[0],
                    geom.pad_begin[1],
                    geom.pad_end[0],
                    geom.pad_end[1],
                ];
                if !small(&sizes)
                    || x.shape != [1, geom.channels, geom.input[0], geom.input[1]]
                    || y.shape != [1, geom.channels, geom.output[0], geom.output[1]]
                    || x.layout != Layout::Nhwc
                    || y.layout != Layout::Nhwc
                    || geom.stride.contains(&0)
                    || geom.kernel.contains(&0)
                {
                    return Err(at("pooling shapes"));
                }
            }
            Step::GlobalPool {
                src,
                dst,
                hw,
                channels,
                ..
            } => {
                let (x, y) = (value(*src)?, value(*dst)?);
                if Some(x.per_image()) != hw.checked_mul(*channels)
                    || y.per_image() != *channels
                    || x.layout != Layout::Nhwc
                    || x.shape.len() != 4
                {
                    return Err(at("global pooling shapes"));
                }
            }
        }
    }
    Ok(())
}

/// Largest element count anything may have.
const LIMIT: usize = 1 << 40;

/// `scale · Π dims`, when at most [`LIMIT`].
fn checked_product(dims: &[usize], scale: usize) -> Option<usize> {
    dims.iter()
        .try_fold(scale, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= LIMIT)
}

/// Lowest and highest offset `Σ index·stride` reaches over `dims` (`(0, -1)` when empty).
fn reach_plain(dims: &[usize], strides: &[i64]) -> Result<(i64, i64), String> {
    if dims.len() != strides.len() || checked_product(dims, 1).is_none() {
        return Err("an index map is too large or its ranks differ".to_owned());
    }
    let overflow = || "an index map overflows".to_owned();
    let (mut lo, mut hi) = (0i64, 0i64);
    for (&d, &s) in dims.iter().zip(strides) {
        if d == 0 {
            return Ok((0, -1));
        }
        let span = (d as i64 - 1).checked_mul(s).ok_or_else(overflow)?;
        if span < 0 {
            lo = lo.checked_add(span).ok_or_else(overflow)?;
        } else {
            hi = hi.checked_add(span).ok_or_else(overflow)?;
        }
    }
    Ok((lo, hi))
}

/// Every size in a geometry small enough that index arithmetic cannot overflow.
fn small(values: &[usize]) -> bool {
    values.iter().all(|&v| v <= 1 << 20)
}

fn check_conv(g: &ConvGeom, x: &Value, y: &Value, transposed: bool) -> Result<(), String> {
    let sizes = [
        g.in_channels,
        g.out_channels,
        g.groups,
        g.kernel[0],
        g.kernel[1],
        g.stride[0],
        g.stride[1],
        g.dilation[0],
        g.dilation[1],
        g.pad[0],
        g.pad[1],
        g.input[0],
        g.input[1],
        g.output[0],
        g.output[1],
    ];
    let ok = small(&sizes)
        && g.groups > 0
        && g.in_channels.is_multiple_of(g.groups)
        && g.out_channels.is_multiple_of(g.groups)
        && !g.stride.contains(&0)
        && !g.dilation.contains(&0)
        && !g.kernel.contains(&0)
        && x.shape == [1, g.in_channels, g.input[0], g.input[1]]
        && y.shape == [1, g.out_channels, g.output[0], g.output[1]]
        && x.layout == Layout::Nhwc
        && y.layout == Layout::Nhwc;
    if !ok {
        return Err(if transposed {
            "transposed convolution shapes".to_owned()
        } else {
            "convolution shapes".to_owned()
        });
    }
    for a in 0..2 {
        let k = g.dilation[a] * (g.kernel[a] - 1) + 1;
        let padded = g.input[a] + 2 * g.pad[a];
        if padded < k || (padded - k) / g.stride[a] + 1 != g.output[a] {
            return Err("convolution output size".to_owned());
        }
    }
    Ok(())
}

fn check_weights(
    g: &ConvGeom,
    w: &WeightRef,
    bias: &Option<WeightRef>,
    dtype: DType,
    weight: impl Fn(&WeightRef) -> Result<(), String>,
) -> Result<(), String> {
    weight(w)?;
    let want = checked_product(
        &[g.in_channels / g.groups.max(1), g.kernel[0], g.kernel[1]],
        g.out_channels,
    );
    if Some(w.len) != want || w.dtype != dtype {
        return Err("filter size".to_owned());
    }
    if let Some(b) = bias {
        weight(b)?;
        if b.len != g.out_channels || b.dtype != DType::F32 {
            return Err("bias".to_owned());
        }
    }
    Ok(())
}
