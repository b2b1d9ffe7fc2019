//! A program resident on the GPU: kernels loaded, weights uploaded, arena and staging buffers
//! allocated, cuDNN descriptors made; it enqueues the program's steps on the stream for a batch.
//! The build uses it to time convolution candidates; the engine to run.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cudnn::sys as dnn;
use cudarc::driver::{CudaFunction, CudaModule, result as drv, sys as drv_sys};

use crate::cudnn::{self, ActDesc, ConvDesc, FilterDesc, TensorDesc, check};
use crate::detectnet;
use crate::gpu::{DeviceBuffer, Gpu};
use crate::program::{
    ConvChoice, ConvGeom, DType, MAX_RANK, Map, Operand, PadMap, PoolGeom, Program, ReduceMap,
    Residual, Step, Walk, WeightRef, unary,
};

/// The CUDA source of every kernel.
pub const KERNEL_SOURCE: &str = include_str!("kernels.cu");

/// NVRTC defines for an activation type.
pub fn kernel_defines(dtype: DType) -> &'static [&'static str] {
    match dtype {
        DType::F32 => &[],
        DType::F16 => &["TAO_HALF"],
    }
}

const THREADS: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MapParams {
    rank: i32,
    pad0: i32,
    dims: [i64; MAX_RANK],
    d: [i64; MAX_RANK],
    a: [i64; MAX_RANK],
    b: [i64; MAX_RANK],
    d_off: i64,
    a_off: i64,
    b_off: i64,
    count: i64,
}

/// `DecodeParams` of the kernel source.
#[repr(C)]
#[derive(Clone, Copy)]
struct DecodeParams {
    batch: i32,
    classes: i32,
    gh: i32,
    gw: i32,
    sx: f32,
    sy: f32,
    norm: f32,
    max_x: f32,
    max_y: f32,
    thr: [f32; detectnet::MAX_CLASSES],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PadParams {
    m: MapParams,
    src_dims: [i64; MAX_RANK],
    begin: [i64; MAX_RANK],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ReduceParams {
    kept_rank: i32,
    red_rank: i32,
    kept: [i64; MAX_RANK],
    kept_src: [i64; MAX_RANK],
    kept_dst: [i64; MAX_RANK],
    red: [i64; MAX_RANK],
    red_src: [i64; MAX_RANK],
    red_dst: [i64; MAX_RANK],
    groups: i64,
    group_len: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PoolParams {
    n: i32,
    h: i32,
    w: i32,
    c: i32,
    oh: i32,
    ow: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    dh: i32,
    dw: i32,
    pt: i32,
    pl: i32,
    pb: i32,
    pr: i32,
    max: i32,
    include_pad: i32,
}

fn fill<const N: usize>(dst: &mut [i64; N], src: impl IntoIterator<Item = i64>) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s;
    }
}

/// Kernel parameters of an element-wise map, in walking order (see [`Map::walk`]).
fn map_params(m: &Map, batch: usize) -> MapParams {
    walk_params(&m.walk(batch), [m.dst_offset, m.a_offset, m.b_offset])
}

/// Kernel parameters of a walk with the (output, a, b) offsets.
fn walk_params(w: &Walk, offsets: [i64; 3]) -> MapParams {
    let mut p = MapParams {
        rank: w.dims.len() as i32,
        count: w.dims.iter().product::<usize>() as i64,
        d_off: offsets[0],
        a_off: offsets[1],
        b_off: offsets[2],
        ..MapParams::default()
    };
    fill(&mut p.dims, w.dims.iter().map(|&d| d as i64));
    fill(&mut p.d, w.dst.iter().copied());
    fill(&mut p.a, w.a.iter().copied());
    fill(&mut p.b, w.b.iter().copied());
    p
}

/// Padding checks every dimension against the input's extent, so its map is passed as it is.
fn pad_params(m: &PadMap, batch: usize) -> PadParams {
    let mut dims = m.map.dims.clone();
    if let Some(d) = dims.first_mut() {
        *d = batch;
    }
    let mut base = MapParams {
        rank: dims.len() as i32,
        count: m.map.count(batch) as i64,
        d_off: m.map.dst_offset,
        a_off: m.map.a_offset,
        b_off: m.map.b_offset,
        ..MapParams::default()
    };
    fill(&mut base.dims, dims.iter().map(|&d| d as i64));
    fill(&mut base.d, m.map.dst.iter().copied());
    fill(&mut base.a, m.map.a.iter().copied());
    let mut p = PadParams {
        m: base,
        ..PadParams::default()
    };
    let mut src = m.src_dims.clone();
    if let Some(d) = src.first_mut() {
        *d = batch;
    }
    fill(&mut p.src_dims, src.iter().map(|&d| d as i64));
    fill(&mut p.begin, m.begin.iter().map(|&d| d as i64));
    p
}

fn reduce_params(m: &ReduceMap, batch: usize) -> ReduceParams {
    let mut p = ReduceParams {
        kept_rank: m.kept.len() as i32,
        red_rank: m.reduced.len() as i32,
        groups: m.groups(batch) as i64,
        group_len: m.group_len() as i64,
        ..ReduceParams::default()
    };
    let mut kept = m.kept.clone();
    if let Some(d) = kept.first_mut() {
        *d = batch;
    }
    fill(&mut p.kept, kept.iter().map(|&d| d as i64));
    fill(&mut p.kept_src, m.kept_src.iter().copied());
    fill(&mut p.kept_dst, m.kept_dst.iter().copied());
    fill(&mut p.red, m.reduced.iter().map(|&d| d as i64));
    fill(&mut p.red_src, m.reduced_src.iter().copied());
    fill(&mut p.red_dst, m.reduced_dst.iter().copied());
    p
}

fn pool_params(g: &PoolGeom, batch: usize) -> PoolParams {
    let i = |v: usize| v as i32;
    PoolParams {
        n: i(batch),
        h: i(g.input[0]),
        w: i(g.input[1]),
        c: i(g.channels),
        oh: i(g.output[0]),
        ow: i(g.output[1]),
        kh: i(g.kernel[0]),
        kw: i(g.kernel[1]),
        sh: i(g.stride[0]),
        sw: i(g.stride[1]),
        dh: i(g.dilation[0]),
        dw: i(g.dilation[1]),
        pt: i(g.pad_begin[0]),
        pl: i(g.pad_begin[1]),
        pb: i(g.pad_end[0]),
        pr: i(g.pad_end[1]),
        max: g.max as i32,
        include_pad: g.count_include_pad as i32,
    }
}

/// Kernel parameters are passed by address; this keeps every one alive until the launch.
#[derive(Default)]
struct Args {
    storage: Vec<Box<dyn std::any::Any>>,
    ptrs: Vec<*mut c_void>,
}

impl Args {
    fn push<T: 'static + Copy>(&mut self, v: T) -> &mut Self {
        let mut b = Box::new(v);
        self.ptrs.push(&mut *b as *mut T as *mut c_void);
        self.storage.push(b);
        self
    }
}

pub struct Kernels {
    _module: Arc<CudaModule>,
    cast_in: CudaFunction,
    cast_in_nhwc: CudaFunction,
    cast_in_s2d: CudaFunction,
    cast_out: CudaFunction,
    copy: CudaFunction,
    copy16: CudaFunction,
    unary: CudaFunction,
    binary: CudaFunction,
    pad: CudaFunction,
    epilogue: CudaFunction,
    pool: CudaFunction,
    global_pool: CudaFunction,
    reduce: CudaFunction,
    softmax: CudaFunction,
    fill: CudaFunction,
    detectnet_decode: CudaFunction,
}

impl Kernels {
    pub fn load(gpu: &Gpu, cubin: &[u8]) -> Result<Kernels, String> {
        let module = gpu
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(cubin.to_vec()))
            .map_err(|e| format!("loading the compiled kernels: {e}"))?;
        let f = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| format!("kernel {name}: {e}"))
        };
        Ok(Kernels {
            cast_in: f("k_cast_in")?,
            cast_in_nhwc: f("k_cast_in_nhwc")?,
            cast_in_s2d: f("k_cast_in_s2d")?,
            cast_out: f("k_cast_out")?,
            copy: f("k_copy")?,
            copy16: f("k_copy16")?,
            unary: f("k_unary")?,
            binary: f("k_binary")?,
            pad: f("k_pad")?,
            epilogue: f("k_epilogue")?,
            pool: f("k_pool")?,
            global_pool: f("k_global_pool")?,
            reduce: f("k_reduce")?,
            softmax: f("k_softmax")?,
            fill: f("k_fill")?,
            detectnet_decode: f("k_detectnet_decode")?,
            _module: module,
        })
    }
}

/// Batch-independent cuDNN state of one convolution step.
struct ConvStatic {
    filter: FilterDesc,
    conv: ConvDesc,
    relu: Option<ActDesc>,
    bias: Option<TensorDesc>,
}

/// Per-batch tensor descriptors of one convolution: `x` the forward convolution's input, `y` its
/// output (for a transposed convolution: `x` is the step's output, `y` its input).
struct ConvBatch {
    x: TensorDesc,
    y: TensorDesc,
}

pub struct Resident {
    /// Milliseconds spent in each part of [`Resident::new`].
    pub timings: Vec<(&'static str, f64)>,
    pub gpu: Arc<Gpu>,
    pub program: Program,
    kernels: Kernels,
    weights: DeviceBuffer,
    arena: DeviceBuffer,
    pub inputs: Vec<DeviceBuffer>,
    pub outputs: Vec<DeviceBuffer>,
    workspace: DeviceBuffer,
    convs: HashMap<usize, ConvStatic>,
    batches: HashMap<usize, HashMap<usize, ConvBatch>>,
    grid_cap: u32,
    /// cuBLASLt, for programs with fully connected steps only.
    lt: Option<crate::cublaslt::Lt>,
}

impl Resident {
    /// Uploads `program` (its weights) and allocates everything it needs for `max_batch` images.
    pub fn new(gpu: Arc<Gpu>, program: Program, cubin: &[u8]) -> Result<Resident, String> {
        gpu.ctx.bind_to_thread().map_err(|e| e.to_string())?;
        let mut timings = Vec::new();
        let mut t = std::time::Instant::now();
        let mut lap = |what: &'static str| {
            timings.push((what, t.elapsed().as_secs_f64() * 1e3));
            t = std::time::Instant::now();
        };
        let kernels = Kernels::load(&gpu, cubin)?;
        lap("kernels");
        let weights = DeviceBuffer::new(&gpu.ctx, program.weights.len())?;
        weights.upload(&program.weights)?;
        lap("weights");
        let arena = DeviceBuffer::new(&gpu.ctx, program.arena_bytes)?;
        lap("arena");
        let staging = |io: &[tao_engine::backend::IoDesc]| {
            io.iter()
                .map(|d| {
                    DeviceBuffer::new(&gpu.ctx, d.elements_per_image() * program.max_batch * 4)
                })
                .collect::<Result<Vec<_>, String>>()
        };
        let inputs = staging(&program.inputs)?;
        let outputs = staging(&program.outputs)?;
        let convs = Resident::rebuild_statics(&program)?;
        let workspace_bytes = program
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Conv { choice, .. } | Step::ConvTranspose { choice, .. } => {
                    choice.map(|c| c.workspace as usize)
                }
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let workspace = DeviceBuffer::new(&gpu.ctx, workspace_bytes)?;
        let lt = match program.steps.iter().any(|s| matches!(s, Step::Gemm(_))) {
            true => Some(crate::cublaslt::Lt::new(&gpu)?),
            false => None,
        };
        lap("staging, descriptors, workspace");
        let grid_cap = (gpu.info.multiprocessors.max(1) as u32) * 32;
        Ok(Resident {
            timings,
            gpu,
            program,
            kernels,
            weights,
            arena,
            inputs,
            outputs,
            workspace,
            convs,
            batches: HashMap::new(),
            grid_cap,
            lt,
        })
    }

    pub fn workspace_bytes(&self) -> usize {
        self.workspace.bytes
    }

    /// Replaces the workspace (tuning may pick algorithms that need more). Captured graphs that
    /// used the old one must be dropped by the caller.
    pub fn set_workspace(&mut self, bytes: usize) -> Result<(), String> {
        if bytes > self.workspace.bytes {
            self.workspace = DeviceBuffer::new(&self.gpu.ctx, bytes)?;
        }
        Ok(())
    }

    fn stream(&self) -> drv_sys::CUstream {
        self.gpu.stream.cu_stream()
    }

    fn value_ptr(&self, v: usize) -> u64 {
        self.arena.ptr + self.program.values[v].offset as u64
    }

    fn weight_ptr(&self, w: &WeightRef) -> u64 {
        self.weights.ptr + w.offset as u64
    }

    fn launch(&self, f: &CudaFunction, blocks: usize, args: &mut Args) -> Result<(), String> {
        let blocks = (blocks.max(1) as u64).min(self.grid_cap as u64) as u32;
        // SAFETY: every kernel's parameter list matches what the callers push (see kernels.cu);
        // every pointer was bounds-checked by `codec::validate` for the largest batch.
        unsafe {
            drv::launch_kernel(
                f.cu_function(),
                (blocks, 1, 1),
                (THREADS, 1, 1),
                0,
                self.stream(),
                &mut args.ptrs,
            )
        }
        .map_err(|e| format!("kernel launch: {e}"))
    }

    fn blocks(count: usize) -> usize {
        count.div_ceil(THREADS as usize)
    }

    /// Fills the arena with deterministic values in [-1, 1) (build-time timing data).
    pub fn fill_arena(&self, seed: u32) -> Result<(), String> {
        let count = (self.program.arena_bytes / self.program.dtype.size()) as i64;
        let mut args = Args::default();
        args.push(self.arena.ptr).push(count).push(seed);
        self.launch(&self.kernels.fill, Self::blocks(count as usize), &mut args)
    }

    /// Makes the per-batch descriptors of every convolution (once per batch size).
    pub fn prepare_batch(&mut self, batch: usize) -> Result<(), String> {
        if self.batches.contains_key(&batch) {
            return Ok(());
        }
        let dtype = self.program.dtype;
        let mut descs = HashMap::new();
        let mut need = 0usize;
        for (i, step) in self.program.steps.iter().enumerate() {
            let (geom, choice, transposed) = match step {
                Step::Conv { geom, choice, .. } => (geom, choice, false),
                Step::ConvTranspose { geom, choice, .. } => (geom, choice, true),
                _ => continue,
            };
            let d = conv_batch(dtype, geom, batch)?;
            if let (Some(c), Some(s)) = (choice, self.convs.get(&i)) {
                need = need.max(self.workspace_need(s, &d, c, transposed)?);
            }
            descs.insert(i, d);
        }
        self.set_workspace(need)?;
        self.batches.insert(batch, descs);
        Ok(())
    }

    fn workspace_need(
        &self,
        s: &ConvStatic,
        d: &ConvBatch,
        c: &ConvChoice,
        transposed: bool,
    ) -> Result<usize, String> {
        let math = cudnn::math_type(c.math).ok_or("bad math type in the plan")?;
        s.conv.set_math(math)?;
        let mut bytes = 0usize;
        // SAFETY: live descriptors and an out-pointer to a local.
        unsafe {
            if transposed {
                let algo = cudnn::bwd_algo(c.algo).ok_or("bad algorithm in the plan")?;
                check(
                    dnn::cudnnGetConvolutionBackwardDataWorkspaceSize(
                        self.gpu.cudnn.0,
                        s.filter.0,
                        d.y.0,
                        s.conv.0,
                        d.x.0,
                        algo,
                        &mut bytes,
                    ),
                    "cudnnGetConvolutionBackwardDataWorkspaceSize",
                )?;
            } else {
                let algo = cudnn::fwd_algo(c.algo).ok_or("bad algorithm in the plan")?;
                check(
                    dnn::cudnnGetConvolutionForwardWorkspaceSize(
                        self.gpu.cudnn.0,
                        d.x.0,
                        s.filter.0,
                        s.conv.0,
                        d.y.0,
                        algo,
                        &mut bytes,
                    ),
                    "cudnnGetConvolutionForwardWorkspaceSize",
                )?;
            }
        }
        Ok(bytes)
    }

    /// Enqueues every step for `batch` images (inputs already in the staging buffers).
    pub fn enqueue(&self, batch: usize) -> Result<(), String> {
        for i in 0..self.program.steps.len() {
            self.enqueue_step(i, batch)?;
        }
        Ok(())
    }

    pub fn enqueue_step(&self, i: usize, batch: usize) -> Result<(), String> {
        let step = &self.program.steps[i];
        let descs = self
            .batches
            .get(&batch)
            .ok_or_else(|| format!("batch {batch} was not prepared"))?;
        let k = &self.kernels;
        let mut args = Args::default();
        match step {
            Step::CastIn { input, dst, map } => {
                let p = map_params(map, batch);
                args.push(self.inputs[*input].ptr)
                    .push(self.value_ptr(*dst))
                    .push(p);
                self.launch(&k.cast_in, Self::blocks(p.count as usize), &mut args)
            }
            Step::CastInNhwc {
                input,
                dst,
                channels,
                hw,
            } => {
                let pixels = batch * hw;
                args.push(self.inputs[*input].ptr)
                    .push(self.value_ptr(*dst))
                    .push(pixels as i64)
                    .push(*channels as i32)
                    .push(self.program.values[*dst].shape[1] as i32)
                    .push(*hw as i64);
                self.launch(&k.cast_in_nhwc, Self::blocks(pixels), &mut args)
            }
            Step::Gemm(g) => {
                let lt = self.lt.as_ref().ok_or("cuBLASLt was not loaded")?;
                lt.matmul(
                    g,
                    self.program.dtype,
                    batch,
                    self.value_ptr(g.src),
                    self.weight_ptr(&g.weights),
                    g.bias.as_ref().map(|b| self.weight_ptr(b)),
                    self.value_ptr(g.dst),
                    &self.gpu,
                )
            }
            Step::CastInSpaceToDepth(s) => {
                let y = &self.program.values[s.dst];
                let pixels = batch * y.shape[2] * y.shape[3];
                args.push(self.inputs[s.input].ptr)
                    .push(self.value_ptr(s.dst))
                    .push(pixels as i64)
                    .push(s.channels as i32)
                    .push(y.shape[1] as i32)
                    .push(s.height as i32)
                    .push(s.width as i32)
                    .push(y.shape[2] as i32)
                    .push(y.shape[3] as i32)
                    .push(s.shift[0] as i32)
                    .push(s.shift[1] as i32);
                self.launch(&k.cast_in_s2d, Self::blocks(pixels), &mut args)
            }
            Step::CastOut { src, output, map } => {
                let p = map_params(map, batch);
                args.push(self.value_ptr(*src))
                    .push(self.outputs[*output].ptr)
                    .push(p);
                self.launch(&k.cast_out, Self::blocks(p.count as usize), &mut args)
            }
            Step::Copy { src, dst, map } => {
                args.push(self.value_ptr(*src)).push(self.value_ptr(*dst));
                let width = 16 / self.program.dtype.size();
                // 16 bytes per index where rows are contiguous and aligned (as the emulator does).
                let (f, p) = match map
                    .walk(batch)
                    .vectorised(width, map.dst_offset, map.a_offset)
                {
                    Some((w, d_off, a_off)) => (&k.copy16, walk_params(&w, [d_off, a_off, 0])),
                    None => (&k.copy, map_params(map, batch)),
                };
                args.push(p);
                self.launch(f, Self::blocks(p.count as usize), &mut args)
            }
            Step::Pad {
                src,
                dst,
                map,
                value,
            } => {
                let p = pad_params(map, batch);
                args.push(self.value_ptr(*src))
                    .push(self.value_ptr(*dst))
                    .push(p)
                    .push(*value);
                self.launch(&k.pad, Self::blocks(p.m.count as usize), &mut args)
            }
            Step::Unary { src, dst, f, map } => {
                let p = map_params(map, batch);
                args.push(self.value_ptr(*src))
                    .push(self.value_ptr(*dst))
                    .push(p)
                    .push(f.code)
                    .push(f.p0)
                    .push(f.p1);
                self.launch(&k.unary, Self::blocks(p.count as usize), &mut args)
            }
            Step::Binary { a, b, dst, op, map } => {
                let ptr = |o: &Operand| match o {
                    Operand::Value(v) => self.value_ptr(*v),
                    Operand::Weight(w) => self.weight_ptr(w),
                };
                let p = map_params(map, batch);
                args.push(ptr(a))
                    .push(ptr(b))
                    .push(self.value_ptr(*dst))
                    .push(p)
                    .push(*op);
                self.launch(&k.binary, Self::blocks(p.count as usize), &mut args)
            }
            Step::Pool { src, dst, geom } => {
                let p = pool_params(geom, batch);
                let count = batch * geom.output[0] * geom.output[1] * geom.channels;
                args.push(self.value_ptr(*src))
                    .push(self.value_ptr(*dst))
                    .push(p);
                self.launch(&k.pool, Self::blocks(count), &mut args)
            }
            Step::GlobalPool {
                src,
                dst,
                max,
                hw,
                channels,
            } => {
                args.push(self.value_ptr(*src))
                    .push(self.value_ptr(*dst))
                    .push(batch as i32)
                    .push(*hw as i32)
                    .push(*channels as i32)
                    .push(*max as i32);
                self.launch(&k.global_pool, Self::blocks(batch * channels), &mut args)
            }
            Step::Reduce {
                src,
                dst,
                kind,
                map,
            } => {
                let p = reduce_params(map, batch);
                args.push(self.value_ptr(*src))
                    .push(self.value_ptr(*dst))
                    .push(p)
                    .push(*kind);
                // One warp per group.
                self.launch(&k.reduce, Self::blocks(p.groups as usize * 32), &mut args)
            }
            Step::Softmax { src, dst, log, map } => {
                let p = reduce_params(map, batch);
                args.push(self.value_ptr(*src))
                    .push(self.value_ptr(*dst))
                    .push(p)
                    .push(*log as i32);
                self.launch(&k.softmax, Self::blocks(p.groups as usize * 32), &mut args)
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
                let c = choice.ok_or_else(|| format!("conv `{node}` has no tuned algorithm"))?;
                let s = self.convs.get(&i).ok_or("missing convolution state")?;
                let d = descs.get(&i).ok_or("missing convolution descriptors")?;
                let fused_bias = if c.bias_half { *bias_half } else { *bias };
                self.conv_forward(
                    s,
                    d,
                    &c,
                    ConvIo {
                        x: self.value_ptr(*src),
                        w: self.weight_ptr(weights),
                        y: self.value_ptr(*dst),
                        z: residual.map(|r| self.value_ptr(r)),
                        residual_mode: *residual_mode,
                        bias: fused_bias.map(|b| self.weight_ptr(&b)),
                    },
                )
                .map_err(|e| format!("conv `{node}`: {e}"))?;
                if !c.fused {
                    self.epilogue(
                        geom,
                        batch,
                        *dst,
                        bias.as_ref(),
                        residual.map(|r| (r, *residual_mode)),
                        activation.code,
                        activation.p0,
                        activation.p1,
                    )?;
                }
                Ok(())
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
                let c = choice
                    .ok_or_else(|| format!("conv-transpose `{node}` has no tuned algorithm"))?;
                let s = self.convs.get(&i).ok_or("missing convolution state")?;
                let d = descs.get(&i).ok_or("missing convolution descriptors")?;
                self.conv_backward_data(
                    s,
                    d,
                    &c,
                    self.weight_ptr(weights),
                    self.value_ptr(*src),
                    self.value_ptr(*dst),
                )
                .map_err(|e| format!("conv-transpose `{node}`: {e}"))?;
                // The epilogue over the step's output: channels are the forward conv's inputs.
                let out_geom = ConvGeom {
                    out_channels: geom.in_channels,
                    output: geom.input,
                    ..*geom
                };
                self.epilogue(
                    &out_geom,
                    batch,
                    *dst,
                    bias.as_ref(),
                    None,
                    activation.code,
                    activation.p0,
                    activation.p1,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn epilogue(
        &self,
        geom: &ConvGeom,
        batch: usize,
        dst: usize,
        bias: Option<&WeightRef>,
        residual: Option<(usize, Residual)>,
        act: i32,
        p0: f32,
        p1: f32,
    ) -> Result<(), String> {
        let mode = match residual {
            Some((_, Residual::BeforeActivation)) => 1i32,
            Some((_, Residual::AfterActivation)) => 2,
            _ => 0,
        };
        if bias.is_none() && mode == 0 && act == unary::IDENTITY {
            return Ok(());
        }
        let count = batch * geom.output[0] * geom.output[1] * geom.out_channels;
        let mut args = Args::default();
        args.push(self.value_ptr(dst))
            .push(bias.map_or(0u64, |b| self.weight_ptr(b)))
            .push(residual.map_or(0u64, |(r, _)| self.value_ptr(r)))
            .push(count as i64)
            .push(geom.out_channels as i32)
            .push(act)
            .push(p0)
            .push(p1)
            .push(mode);
        self.launch(&self.kernels.epilogue, Self::blocks(count), &mut args)
    }

    fn conv_forward(
        &self,
        s: &ConvStatic,
        d: &ConvBatch,
        c: &ConvChoice,
        io: ConvIo,
    ) -> Result<(), String> {
        let algo = cudnn::fwd_algo(c.algo).ok_or("bad algorithm in the plan")?;
        let math = cudnn::math_type(c.math).ok_or("bad math type in the plan")?;
        s.conv.set_math(math)?;
        let one = 1f32;
        let zero = 0f32;
        let ws = (self.workspace.ptr as *mut c_void, self.workspace.bytes);
        // SAFETY: descriptors match the buffers (validated program), the workspace is at least
        // what cuDNN asked for this batch (prepare_batch), scaling factors are f32 as cuDNN
        // takes them for FP32 and FP16 data.
        unsafe {
            if c.fused {
                let relu = s
                    .relu
                    .as_ref()
                    .ok_or("fused convolution without an activation")?;
                let bias_desc = s.bias.as_ref().ok_or("fused convolution without a bias")?;
                let bias = io.bias.ok_or("fused convolution without a bias")?;
                let (alpha2, z) = match (io.z, io.residual_mode) {
                    (Some(z), Residual::BeforeActivation) => (1f32, z),
                    _ => (0f32, io.y),
                };
                check(
                    dnn::cudnnConvolutionBiasActivationForward(
                        self.gpu.cudnn.0,
                        &one as *const f32 as *const c_void,
                        d.x.0,
                        io.x as *const c_void,
                        s.filter.0,
                        io.w as *const c_void,
                        s.conv.0,
                        algo,
                        ws.0,
                        ws.1,
                        &alpha2 as *const f32 as *const c_void,
                        d.y.0,
                        z as *const c_void,
                        bias_desc.0,
                        bias as *const c_void,
                        relu.0,
                        d.y.0,
                        io.y as *mut c_void,
                    ),
                    "cudnnConvolutionBiasActivationForward",
                )
            } else {
                check(
                    dnn::cudnnConvolutionForward(
                        self.gpu.cudnn.0,
                        &one as *const f32 as *const c_void,
                        d.x.0,
                        io.x as *const c_void,
                        s.filter.0,
                        io.w as *const c_void,
                        s.conv.0,
                        algo,
                        ws.0,
                        ws.1,
                        &zero as *const f32 as *const c_void,
                        d.y.0,
                        io.y as *mut c_void,
                    ),
                    "cudnnConvolutionForward",
                )
            }
        }
    }

    fn conv_backward_data(
        &self,
        s: &ConvStatic,
        d: &ConvBatch,
        c: &ConvChoice,
        w: u64,
        dy: u64,
        dx: u64,
    ) -> Result<(), String> {
        let algo = cudnn::bwd_algo(c.algo).ok_or("bad algorithm in the plan")?;
        let math = cudnn::math_type(c.math).ok_or("bad math type in the plan")?;
        s.conv.set_math(math)?;
        let one = 1f32;
        let zero = 0f32;
        // SAFETY: as in conv_forward.
        unsafe {
            check(
                dnn::cudnnConvolutionBackwardData(
                    self.gpu.cudnn.0,
                    &one as *const f32 as *const c_void,
                    s.filter.0,
                    w as *const c_void,
                    d.y.0,
                    dy as *const c_void,
                    s.conv.0,
                    algo,
                    self.workspace.ptr as *mut c_void,
                    self.workspace.bytes,
                    &zero as *const f32 as *const c_void,
                    d.x.0,
                    dx as *mut c_void,
                ),
                "cudnnConvolutionBackwardData",
            )
        }
    }

    /// Host → staging copy of input `i` (`data` must be pinned for the copy to be asynchronous
    /// and capturable).
    pub fn enqueue_input(&self, i: usize, data: &[f32]) -> Result<(), String> {
        // SAFETY: `data` fits the staging buffer (checked by the engine) and outlives the copy
        // (the engine synchronises before reusing it).
        unsafe { drv::memcpy_htod_async(self.inputs[i].ptr, data, self.stream()) }
            .map_err(|e| format!("input copy: {e}"))
    }

    /// DetectNet_v2 grid decode of the last run's outputs `coverage` and `boxes` (indices into the
    /// program's outputs) for `batch` images; candidates in [`detectnet::decode_cpu`]'s order.
    pub fn decode_detectnet(
        &self,
        batch: usize,
        coverage: usize,
        boxes: usize,
        p: &detectnet::DecodeParams,
    ) -> Result<Vec<detectnet::Candidate>, String> {
        let thr = p.threshold_table()?;
        let cells = p.cells();
        let per_image = |o: usize| self.program.outputs.get(o).map(|d| d.elements_per_image());
        if per_image(coverage) != Some(p.classes * cells)
            || per_image(boxes) != Some(4 * p.classes * cells)
            || batch == 0
            || batch > self.program.max_batch
        {
            return Err(format!(
                "outputs {coverage} and {boxes} are not a {}-class coverage and box grid of {}x{} for batch {batch}",
                p.classes, p.grid_width, p.grid_height
            ));
        }
        let capacity = batch * p.classes * cells;
        let dims = |v: usize| i32::try_from(v).map_err(|_| "grid too large".to_string());
        let params = DecodeParams {
            batch: dims(batch)?,
            classes: dims(p.classes)?,
            gh: dims(p.grid_height)?,
            gw: dims(p.grid_width)?,
            sx: p.stride_x,
            sy: p.stride_y,
            norm: p.box_norm,
            max_x: p.input_width,
            max_y: p.input_height,
            thr,
        };
        let found = DeviceBuffer::new(&self.gpu.ctx, 4 + 32 * capacity)?;
        let mut count = [0u32; 1];
        // SAFETY: `found` holds the counter and `capacity` candidates; the kernel writes at most
        // that many; the outputs hold `batch` images (checked above).
        unsafe {
            drv::memset_d8_async(found.ptr, 0, 4, self.stream()).map_err(|e| e.to_string())?;
        }
        let mut args = Args::default();
        args.push(self.outputs[coverage].ptr)
            .push(self.outputs[boxes].ptr)
            .push(params)
            .push(found.ptr)
            .push(found.ptr + 4)
            .push(capacity as u32);
        self.launch(
            &self.kernels.detectnet_decode,
            Self::blocks(capacity),
            &mut args,
        )?;
        self.synchronize()?;
        // SAFETY: synchronous copies out of `found`, within its size.
        unsafe { drv::memcpy_dtoh_sync(&mut count, found.ptr) }.map_err(|e| e.to_string())?;
        let n = (count[0] as usize).min(capacity);
        let mut words = vec![0u32; 8 * n];
        if n > 0 {
            // SAFETY: as above.
            unsafe { drv::memcpy_dtoh_sync(&mut words, found.ptr + 4) }
                .map_err(|e| e.to_string())?;
        }
        let mut out: Vec<detectnet::Candidate> = words
            .chunks_exact(8)
            .map(|c| detectnet::Candidate {
                image: c[0],
                class_id: c[1],
                cell: c[2],
                confidence: f32::from_bits(c[3]),
                x: f32::from_bits(c[4]),
                y: f32::from_bits(c[5]),
                width: f32::from_bits(c[6]),
                height: f32::from_bits(c[7]),
            })
            .collect();
        detectnet::sort(&mut out);
        Ok(out)
    }

    pub fn enqueue_output(&self, i: usize, data: &mut [f32]) -> Result<(), String> {
        // SAFETY: as enqueue_input.
        unsafe { drv::memcpy_dtoh_async(data, self.outputs[i].ptr, self.stream()) }
            .map_err(|e| format!("output copy: {e}"))
    }

    pub fn synchronize(&self) -> Result<(), String> {
        self.gpu
            .stream
            .synchronize()
            .map_err(|e| format!("stream: {e}"))
    }

    /// Microseconds per call of `f` (median of `rounds` rounds of `reps` calls, after a warm-up).
    pub fn time_us(
        &self,
        reps: usize,
        rounds: usize,
        mut f: impl FnMut() -> Result<(), String>,
    ) -> Result<f32, String> {
        let stream = self.stream();
        f()?;
        self.synchronize()?;
        let ev = |_: usize| {
            drv::event::create(drv_sys::CUevent_flags::CU_EVENT_DEFAULT).map_err(|e| e.to_string())
        };
        let (start, end) = (ev(0)?, ev(1)?);
        let mut times = Vec::with_capacity(rounds);
        let result = (|| {
            for _ in 0..rounds.max(1) {
                // SAFETY: live events on the engine's stream.
                unsafe { drv::event::record(start, stream) }.map_err(|e| e.to_string())?;
                for _ in 0..reps.max(1) {
                    f()?;
                }
                // SAFETY: as above.
                unsafe {
                    drv::event::record(end, stream).map_err(|e| e.to_string())?;
                    drv::event::synchronize(end).map_err(|e| e.to_string())?;
                    times.push(
                        drv::event::elapsed(start, end).map_err(|e| e.to_string())? * 1000.0
                            / reps.max(1) as f32,
                    );
                }
            }
            Ok::<(), String>(())
        })();
        // SAFETY: events created above, destroyed once.
        unsafe {
            let _ = drv::event::destroy(start);
            let _ = drv::event::destroy(end);
        }
        result?;
        times.sort_by(f32::total_cmp);
        Ok(times[times.len() / 2])
    }
}

/// The buffers of one forward convolution.
struct ConvIo {
    x: u64,
    w: u64,
    y: u64,
    z: Option<u64>,
    residual_mode: Residual,
    bias: Option<u64>,
}

/// `relu` picks the fused call's activation (ReLU, else identity).
fn conv_static(
    dtype: DType,
    g: &ConvGeom,
    bias: Option<(DType, usize)>,
    relu: bool,
) -> Result<ConvStatic, String> {
    let filter = FilterDesc::krsc(
        dtype,
        g.out_channels,
        g.in_channels / g.groups.max(1),
        g.kernel[0],
        g.kernel[1],
    )?;
    let conv = ConvDesc::new(g.pad, g.stride, g.dilation, g.groups)?;
    let relu = Some(ActDesc::new(relu)?);
    let bias = match bias {
        Some((d, k)) => Some(TensorDesc::bias(d, k)?),
        None => None,
    };
    Ok(ConvStatic {
        filter,
        conv,
        relu,
        bias,
    })
}

fn conv_batch(dtype: DType, g: &ConvGeom, batch: usize) -> Result<ConvBatch, String> {
    Ok(ConvBatch {
        x: TensorDesc::nhwc(dtype, batch, g.in_channels, g.input[0], g.input[1])?,
        y: TensorDesc::nhwc(dtype, batch, g.out_channels, g.output[0], g.output[1])?,
    })
}

/// Build-time choice of every convolution's algorithm by timing the candidates on this GPU at
/// `program.max_batch`. Returns one line per convolution for the plan's listing.
pub fn tune(res: &mut Resident, workspace_limit: usize) -> Result<Vec<String>, String> {
    let batch = res.program.max_batch;
    res.set_workspace(workspace_limit)?;
    res.fill_arena(0x5eed)?;
    res.synchronize()?;
    let dtype = res.program.dtype;
    let mut cache: HashMap<String, ConvChoice> = HashMap::new();
    let mut report = Vec::new();
    for i in 0..res.program.steps.len() {
        let step = res.program.steps[i].clone();
        let (key, node) = match &step {
            Step::Conv {
                node,
                geom,
                activation,
                residual_mode,
                bias,
                ..
            } => (
                format!(
                    "conv {geom:?} act {} res {residual_mode:?} bias {}",
                    activation.code,
                    bias.is_some()
                ),
                node.clone(),
            ),
            Step::ConvTranspose { node, geom, .. } => (format!("convT {geom:?}"), node.clone()),
            _ => continue,
        };
        let (choice, note) = match cache.get(&key) {
            Some(c) => (*c, "same shape as an earlier layer".to_owned()),
            None => {
                let (c, note) = match &step {
                    Step::Conv { .. } => tune_conv(res, i, batch, dtype, workspace_limit),
                    _ => tune_conv_transpose(res, i, batch, dtype, workspace_limit),
                }
                .map_err(|e| format!("tuning `{node}`: {e}"))?;
                cache.insert(key, c);
                (c, note)
            }
        };
        match &mut res.program.steps[i] {
            Step::Conv { choice: slot, .. } | Step::ConvTranspose { choice: slot, .. } => {
                *slot = Some(choice)
            }
            _ => {}
        }
        report.push(format!(
            "{}\talgo={}\tmath={}\t{}\tws={}\t{:.1}us\t{node}\t{note}",
            if matches!(step, Step::Conv { .. }) {
                "conv"
            } else {
                "conv-transpose"
            },
            choice.algo,
            choice.math,
            if choice.fused { "fused" } else { "epilogue" },
            choice.workspace,
            choice.time_us
        ));
    }
    // Descriptors made during tuning may name a bias type other than the one chosen.
    res.batches.clear();
    let fresh = Resident::rebuild_statics(&res.program)?;
    res.convs = fresh;
    Ok(report)
}

impl Resident {
    fn rebuild_statics(program: &Program) -> Result<HashMap<usize, ConvStatic>, String> {
        let mut convs = HashMap::new();
        for (i, step) in program.steps.iter().enumerate() {
            match step {
                Step::Conv {
                    geom,
                    bias,
                    bias_half,
                    choice,
                    activation,
                    ..
                } => {
                    let half = choice.is_some_and(|c| c.bias_half);
                    let b = if half { *bias_half } else { *bias };
                    let bias = b.map(|b| (b.dtype, geom.out_channels));
                    let relu = activation.code == unary::RELU;
                    convs.insert(i, conv_static(program.dtype, geom, bias, relu)?);
                }
                Step::ConvTranspose { geom, .. } => {
                    convs.insert(i, conv_static(program.dtype, geom, None, false)?);
                }
                _ => {}
            }
        }
        Ok(convs)
    }
}

/// The math types to try: FP32 uses plain FMA first (exact FP32, no TF32), FP16 tensor cores.
fn math_candidates(dtype: DType) -> [dnn::cudnnMathType_t; 2] {
    match dtype {
        DType::F32 => [
            dnn::cudnnMathType_t::CUDNN_FMA_MATH,
            dnn::cudnnMathType_t::CUDNN_DEFAULT_MATH,
        ],
        DType::F16 => [
            dnn::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
            dnn::cudnnMathType_t::CUDNN_DEFAULT_MATH,
        ],
    }
}

/// The fastest variant of convolution step `i`, and a note of what was measured.
fn tune_conv(
    res: &mut Resident,
    i: usize,
    batch: usize,
    dtype: DType,
    limit: usize,
) -> Result<(ConvChoice, String), String> {
    let Step::Conv {
        src,
        dst,
        residual,
        residual_mode,
        activation,
        geom,
        weights,
        bias,
        bias_half,
        ..
    } = res.program.steps[i].clone()
    else {
        return Err("not a convolution".into());
    };
    let d = conv_batch(dtype, &geom, batch)?;
    let (x, y, w) = (
        res.value_ptr(src),
        res.value_ptr(dst),
        res.weight_ptr(&weights),
    );
    let mut candidates: Vec<(u32, u32, usize, f32)> = Vec::new();
    let mut last_error = String::from("cuDNN returned no algorithm");
    for math in math_candidates(dtype) {
        let s = conv_static(dtype, &geom, None, false)?;
        s.conv.set_math(math)?;
        let mut perf: [std::mem::MaybeUninit<dnn::cudnnConvolutionFwdAlgoPerf_t>; 8] =
            [std::mem::MaybeUninit::uninit(); 8];
        let mut returned = 0i32;
        // SAFETY: buffers sized for `batch` by the program; results written into `perf`.
        let status = unsafe {
            dnn::cudnnFindConvolutionForwardAlgorithmEx(
                res.gpu.cudnn.0,
                d.x.0,
                x as *const c_void,
                s.filter.0,
                w as *const c_void,
                s.conv.0,
                d.y.0,
                y as *mut c_void,
                8,
                &mut returned,
                perf.as_mut_ptr() as *mut dnn::cudnnConvolutionFwdAlgoPerf_t,
                res.workspace.ptr as *mut c_void,
                limit,
            )
        };
        if let Err(e) = check(status, "cudnnFindConvolutionForwardAlgorithmEx") {
            last_error = e;
            continue;
        }
        for p in perf.iter().take(returned.clamp(0, 8) as usize) {
            // SAFETY: cuDNN wrote the first `returned` entries.
            let p = unsafe { p.assume_init() };
            if p.status == dnn::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                && p.memory <= limit
                && p.time >= 0.0
            {
                candidates.push((
                    p.algo as u32,
                    cudnn::math_number(p.mathType),
                    p.memory,
                    p.time * 1000.0,
                ));
            }
        }
        if !candidates.is_empty() {
            break;
        }
    }
    if candidates.is_empty() {
        return Err(last_error);
    }
    candidates.sort_by(|a, b| a.3.total_cmp(&b.3));
    let needs_epilogue = bias.is_some() || residual.is_some() || activation.code != unary::IDENTITY;
    let s_plain = conv_static(dtype, &geom, None, false)?;
    let epilogue_us = if needs_epilogue {
        res.time_us(5, 3, || {
            res.epilogue(
                &geom,
                batch,
                dst,
                bias.as_ref(),
                residual.map(|r| (r, residual_mode)),
                activation.code,
                activation.p0,
                activation.p1,
            )
        })?
    } else {
        0.0
    };
    // The best plain algorithm, re-timed the same way as the fused candidates.
    let (algo, math, memory, _) = candidates[0];
    let plain = ConvChoice {
        algo,
        math,
        fused: false,
        bias_half: false,
        workspace: memory as u64,
        time_us: 0.0,
    };
    let plain_us = res.time_us(5, 3, || {
        res.conv_forward(
            &s_plain,
            &d,
            &plain,
            ConvIo {
                x,
                w,
                y,
                z: None,
                residual_mode: Residual::None,
                bias: None,
            },
        )
    })? + epilogue_us;
    let mut best = ConvChoice {
        time_us: plain_us,
        ..plain
    };
    let mut note = format!(
        "plain algo {algo} {:.1}us + epilogue {epilogue_us:.1}us",
        plain_us - epilogue_us
    );
    // cuDNN fuses bias + ReLU (or identity, with one algorithm) and a residual before it.
    let fusable = bias.is_some()
        && matches!(activation.code, unary::RELU | unary::IDENTITY)
        && residual_mode != Residual::AfterActivation;
    if fusable {
        let bias_options: Vec<(bool, WeightRef)> = match dtype {
            DType::F16 => [(true, bias_half), (false, bias)]
                .into_iter()
                .filter_map(|(h, b)| b.map(|b| (h, b)))
                .collect(),
            DType::F32 => bias.map(|b| vec![(false, b)]).unwrap_or_default(),
        };
        for &(algo, math, memory, _) in candidates.iter().take(4) {
            let implicit_precomp = algo == 1;
            if activation.code == unary::IDENTITY && !implicit_precomp {
                continue;
            }
            for &(half, b) in &bias_options {
                let relu = activation.code == unary::RELU;
                let s = match conv_static(dtype, &geom, Some((b.dtype, geom.out_channels)), relu) {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                let c = ConvChoice {
                    algo,
                    math,
                    fused: true,
                    bias_half: half,
                    workspace: memory as u64,
                    time_us: 0.0,
                };
                let io = || ConvIo {
                    x,
                    w,
                    y,
                    z: residual.map(|r| res.value_ptr(r)),
                    residual_mode,
                    bias: Some(res.weight_ptr(&b)),
                };
                match res.time_us(5, 3, || res.conv_forward(&s, &d, &c, io())) {
                    Ok(t) => {
                        note += &format!("; fused algo {algo} {t:.1}us");
                        if t < best.time_us {
                            best = ConvChoice { time_us: t, ..c };
                        }
                        break;
                    }
                    // cuDNN rejects some bias types or algorithms here: try the next.
                    Err(_) => res.synchronize()?,
                }
            }
        }
    }
    Ok((best, note))
}

fn tune_conv_transpose(
    res: &mut Resident,
    i: usize,
    batch: usize,
    dtype: DType,
    limit: usize,
) -> Result<(ConvChoice, String), String> {
    let Step::ConvTranspose {
        src,
        dst,
        geom,
        weights,
        ..
    } = res.program.steps[i].clone()
    else {
        return Err("not a transposed convolution".into());
    };
    let d = conv_batch(dtype, &geom, batch)?;
    let (dy, dx, w) = (
        res.value_ptr(src),
        res.value_ptr(dst),
        res.weight_ptr(&weights),
    );
    let mut last_error = String::from("cuDNN returned no algorithm");
    for math in math_candidates(dtype) {
        let s = conv_static(dtype, &geom, None, false)?;
        s.conv.set_math(math)?;
        let mut perf: [std::mem::MaybeUninit<dnn::cudnnConvolutionBwdDataAlgoPerf_t>; 6] =
            [std::mem::MaybeUninit::uninit(); 6];
        let mut returned = 0i32;
        // SAFETY: as in tune_conv.
        let status = unsafe {
            dnn::cudnnFindConvolutionBackwardDataAlgorithmEx(
                res.gpu.cudnn.0,
                s.filter.0,
                w as *const c_void,
                d.y.0,
                dy as *const c_void,
                s.conv.0,
                d.x.0,
                dx as *mut c_void,
                6,
                &mut returned,
                perf.as_mut_ptr() as *mut dnn::cudnnConvolutionBwdDataAlgoPerf_t,
                res.workspace.ptr as *mut c_void,
                limit,
            )
        };
        if let Err(e) = check(status, "cudnnFindConvolutionBackwardDataAlgorithmEx") {
            last_error = e;
            continue;
        }
        let mut best: Option<ConvChoice> = None;
        for p in perf.iter().take(returned.clamp(0, 6) as usize) {
            // SAFETY: cuDNN wrote the first `returned` entries.
            let p = unsafe { p.assume_init() };
            if p.status == dnn::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                && p.memory <= limit
                && p.time >= 0.0
                && best.is_none_or(|b| p.time * 1000.0 < b.time_us)
            {
                best = Some(ConvChoice {
                    algo: p.algo as u32,
                    math: cudnn::math_number(p.mathType),
                    fused: false,
                    bias_half: false,
                    workspace: p.memory as u64,
                    time_us: p.time * 1000.0,
                });
            }
        }
        if let Some(b) = best {
            return Ok((b, String::new()));
        }
    }
    Err(last_error)
}
