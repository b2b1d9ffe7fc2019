//! The CPU backend: FP32 kernels from `tao-kernels` (Winograd, GEMM-based and depthwise
//! convolutions with fused epilogues, pooling) over NHWC activations in one preallocated arena.
//!
//! A plan holds the optimised graph (as ONNX) and, per convolution, the chosen algorithm and its
//! packed weights; loading re-derives the (cheap, deterministic) program and takes the packed weights
//! as they are, so no weight is transformed twice.

mod generic;
pub mod int8;
mod lower;

use std::collections::HashMap;

use tao_graph::ir::{Graph, Tensor};
use tao_graph::onnx::{ExportOptions, export};
use tao_kernels::{
    Context, Conv2dSpec, ConvTranspose2dSpec, Nhwc, NhwcMut, PreparedConv, PreparedConvTranspose,
    Residual, global_pool, nchw_to_nhwc, nhwc_to_nchw, pool2d,
};

pub use lower::PrepareFresh;
use lower::{Elementwise, Prepared, RefInput, algorithm_from_name, kernel_error};
pub use lower::{Layout, Program, Step, Value, lower, step_values};
use tao_kernels_int8::{NhwcI8, NhwcI8Mut, QInput, QOutput};

use crate::backend::{Backend, BuildConfig, Engine, EngineError, EngineResult, IoDesc, Precision};
use crate::device::cpu_fingerprint;
use crate::plan::{Plan, PlanBuilder};

pub const BACKEND_NAME: &str = "cpu";
const GRAPH_SECTION: &str = "graph.onnx";
const CHOICES_SECTION: &str = "cpu.choices";
/// The plan line of engines whose INT8 convolutions pass activations as f32 only.
const S8_OFF_LINE: &str = "s8-activations off";

pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        BACKEND_NAME
    }

    fn device(&self) -> String {
        cpu_fingerprint()
    }

    fn build(&self, graph: &Graph, config: &BuildConfig) -> EngineResult<PlanBuilder> {
        if config.precision == Precision::Int8 {
            // Never a silent FP32 engine for an INT8 request.
            return Err(EngineError::Invalid(
                "INT8 engines need a calibration table: build them with cpu::int8::CpuInt8Backend"
                    .into(),
            ));
        }
        build_plan(graph, config, &mut PrepareFresh)
    }

    fn load(&self, plan: &Plan, threads: usize) -> EngineResult<Box<dyn Engine>> {
        load_plan(plan, threads)
    }
}

/// Lowers `graph` with the kernels `prepared` makes and writes the plan.
fn build_plan(
    graph: &Graph,
    config: &BuildConfig,
    prepared: &mut dyn lower::Prepared,
) -> EngineResult<PlanBuilder> {
    {
        let program = lower(graph, prepared)?;
        let onnx = export(graph, &ExportOptions::default())?;
        let mut choices = format!("max-batch {}\n", config.max_batch);
        if !prepared.s8_activations() {
            choices += S8_OFF_LINE;
            choices += "\n";
        }
        let mut builder = PlanBuilder::new();
        for step in &program.steps {
            let (node, kind, algorithm, packed) = match step {
                Step::ConvInt8 { node, conv, .. } => {
                    choices += &format!("conv-int8\t{}\t{node}\n", conv.algorithm().name());
                    builder = builder.section(&int8::section_name(node), conv.to_bytes());
                    continue;
                }
                Step::Conv { node, conv, .. } => {
                    (node, "conv", conv.algorithm().name(), conv.packed())
                }
                Step::ConvTranspose { node, conv, .. } => {
                    (node, "conv-transpose", "direct", conv.packed())
                }
                _ => continue,
            };
            choices += &format!("{kind}\t{algorithm}\t{node}\n");
            builder = builder.section(&format!("packed/{node}"), f32_bytes(packed));
        }
        Ok(builder
            .section(GRAPH_SECTION, onnx)
            .section(CHOICES_SECTION, choices.into_bytes()))
    }
}

fn load_plan(plan: &Plan, threads: usize) -> EngineResult<Box<dyn Engine>> {
    {
        let graph = tao_graph::onnx::import(plan.section(GRAPH_SECTION)?)?;
        let choices = std::str::from_utf8(plan.section(CHOICES_SECTION)?)
            .map_err(|_| EngineError::Invalid("plan choices are not UTF-8".into()))?;
        let mut max_batch = 1;
        let mut s8_activations = true;
        let mut algorithms = HashMap::new();
        for line in choices.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                [kind, algorithm, node] => {
                    algorithms.insert(node.to_string(), (kind.to_string(), algorithm.to_string()));
                }
                _ if line == S8_OFF_LINE => s8_activations = false,
                _ => {
                    if let Some(n) = line.strip_prefix("max-batch ") {
                        max_batch = n
                            .parse()
                            .map_err(|_| EngineError::Invalid(format!("bad plan line `{line}`")))?;
                    }
                }
            }
        }
        let mut stored = FromPlan {
            plan,
            algorithms,
            s8_activations,
        };
        let program = lower(&graph, &mut stored)?;
        Ok(Box::new(CpuEngine::new(program, max_batch, threads)?))
    }
}

/// Kernel choices read back from a plan.
struct FromPlan<'p> {
    plan: &'p Plan,
    algorithms: HashMap<String, (String, String)>,
    s8_activations: bool,
}

impl FromPlan<'_> {
    fn packed(&self, node: &str) -> EngineResult<Vec<f32>> {
        let bytes = self.plan.section(&format!("packed/{node}"))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

impl Prepared for FromPlan<'_> {
    fn s8_activations(&self) -> bool {
        self.s8_activations
    }

    fn conv(
        &mut self,
        node: &str,
        spec: &Conv2dSpec,
        _: &[f32],
        _: Option<&[f32]>,
    ) -> EngineResult<PreparedConv> {
        let (_, name) = self.algorithms.get(node).ok_or_else(|| {
            EngineError::Invalid(format!("plan has no kernel choice for conv `{node}`"))
        })?;
        let algorithm = algorithm_from_name(name)
            .ok_or_else(|| EngineError::Invalid(format!("unknown conv algorithm `{name}`")))?;
        PreparedConv::from_parts(*spec, algorithm, &self.packed(node)?)
            .map_err(|e| kernel_error(node, "Conv", e))
    }

    fn conv_transpose(
        &mut self,
        node: &str,
        spec: &ConvTranspose2dSpec,
        _: &[f32],
        _: Option<&[f32]>,
    ) -> EngineResult<PreparedConvTranspose> {
        PreparedConvTranspose::from_parts(*spec, &self.packed(node)?)
            .map_err(|e| kernel_error(node, "ConvTranspose", e))
    }

    fn conv_int8(
        &mut self,
        node: &str,
        spec: &Conv2dSpec,
        _: &[f32],
        _: Option<&[f32]>,
        _: &str,
    ) -> EngineResult<Option<tao_kernels_int8::PreparedQConv>> {
        match self.algorithms.get(node) {
            Some((kind, _)) if kind == "conv-int8" => {
                int8::load_conv(self.plan, node, spec).map(Some)
            }
            _ => Ok(None),
        }
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Called after each step of a run with the step, the program's values and the arena.
type AfterStep<'a> = dyn FnMut(&Step, &[Value], &[f32]) + 'a;

/// A runnable CPU engine: the program, its arena for `max_batch` images and the kernel context.
pub struct CpuEngine {
    program: Program,
    max_batch: usize,
    memory: Memory,
    inputs: Vec<IoDesc>,
    outputs: Vec<IoDesc>,
}

/// What the steps run on, all sized when the engine is made: the activation arena, the kernels'
/// scratch memory and their threads.
struct Memory {
    arena: Vec<f32>,
    scratch: Vec<f32>,
    ctx: Context,
    int8: int8::Int8Runtime,
}

impl CpuEngine {
    pub fn new(program: Program, max_batch: usize, threads: usize) -> EngineResult<CpuEngine> {
        let max_batch = max_batch.max(1);
        let ctx = Context::new(threads.max(1)).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let scratch_len = program
            .steps
            .iter()
            .map(|s| match s {
                Step::Conv { conv, .. } => conv.scratch_len(ctx.threads()),
                Step::ConvTranspose { conv, .. } => conv.scratch_len(ctx.threads()),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let arena_len = program
            .arena_per_image
            .checked_mul(max_batch)
            .ok_or_else(|| EngineError::Invalid("engine memory size overflows".into()))?;
        Ok(CpuEngine {
            memory: Memory {
                int8: int8::Int8Runtime::new(&program, &ctx)?,
                arena: vec![0.0; arena_len],
                // Scratch is sized per image by the kernels; batches reuse it.
                scratch: vec![0.0; scratch_len.max(1)],
                ctx,
            },
            inputs: program.inputs.iter().map(|(d, _)| d.clone()).collect(),
            outputs: program.outputs.iter().map(|(d, _)| d.clone()).collect(),
            program,
            max_batch,
        })
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Runs like [`Engine::run`] and shows `observe` every graph input and every value a step writes,
    /// by tensor name, for `batch` images (4-D values in NHWC order). INT8 calibration collects its
    /// activation statistics through this, from the same engine that infers.
    pub fn run_observed(
        &mut self,
        batch: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        observe: &mut dyn FnMut(&str, &[f32]),
    ) -> EngineResult<()> {
        for (desc, data) in self.program.inputs.iter().zip(inputs) {
            observe(&desc.0.name, data);
        }
        let max_batch = self.max_batch;
        self.run_with(batch, inputs, outputs, &mut |step, values, arena| {
            // Layout conversions repeat a tensor already seen.
            if matches!(step, Step::ToNhwc { .. } | Step::ToNchw { .. }) {
                return;
            }
            for (v, writes) in lower::step_values(step) {
                // s8 values (INT8 engines only) are seen as the f32 values they quantize.
                if writes && values[v].s8_scale.is_none() {
                    observe(&values[v].name, &arena[region(values, max_batch, v, batch)]);
                }
            }
        })
    }

    /// Runs once like [`Engine::run`] and returns each step's description and time.
    pub fn profile(
        &mut self,
        batch: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> EngineResult<Vec<(String, std::time::Duration)>> {
        let mut times = Vec::with_capacity(self.program.steps.len());
        let mut started = std::time::Instant::now();
        self.run_with(batch, inputs, outputs, &mut |step, values, _| {
            times.push((step.describe(values), started.elapsed()));
            started = std::time::Instant::now();
        })?;
        Ok(times)
    }

    /// Bytes of activation memory held for `max_batch` images.
    pub fn arena_bytes(&self) -> usize {
        self.memory.arena.len() * 4
    }

    /// Checks the buffers, runs every step (calling `after_step` with the arena after each) and
    /// copies the outputs out. Allocates nothing when `after_step` does not.
    fn run_with(
        &mut self,
        batch: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        after_step: &mut AfterStep<'_>,
    ) -> EngineResult<()> {
        if batch == 0 || batch > self.max_batch {
            return Err(EngineError::Invalid(format!(
                "batch {batch} is outside 1..={}",
                self.max_batch
            )));
        }
        if inputs.len() != self.inputs.len() || outputs.len() != self.outputs.len() {
            return Err(EngineError::Invalid(format!(
                "engine takes {} inputs and {} outputs, got {} and {}",
                self.inputs.len(),
                self.outputs.len(),
                inputs.len(),
                outputs.len()
            )));
        }
        let values = &self.program.values;
        for ((desc, v), data) in self.program.inputs.iter().zip(inputs) {
            let want = desc.elements_per_image() * batch;
            if data.len() != want {
                return Err(EngineError::Invalid(format!(
                    "input `{}` has {} values, {batch} images of {:?} need {want}",
                    desc.name,
                    data.len(),
                    desc.shape
                )));
            }
            self.memory.arena[region(values, self.max_batch, *v, batch)].copy_from_slice(data);
        }
        for (desc, out) in self.outputs.iter().zip(outputs.iter()) {
            let want = desc.elements_per_image() * batch;
            if out.len() != want {
                return Err(EngineError::Invalid(format!(
                    "output `{}` buffer has {} values, {batch} images of {:?} need {want}",
                    desc.name,
                    out.len(),
                    desc.shape
                )));
            }
        }
        let shapes = Shapes {
            values,
            max_batch: self.max_batch,
            batch,
        };
        for step in &self.program.steps {
            run_step(step, &shapes, &mut self.memory)?;
            after_step(step, values, &self.memory.arena);
        }
        for ((_, v), out) in self.program.outputs.iter().zip(outputs.iter_mut()) {
            out.copy_from_slice(&self.memory.arena[region(values, self.max_batch, *v, batch)]);
        }
        Ok(())
    }
}

/// The slice of value `v` for `batch` images. Values are laid out image-major inside their block.
fn region(values: &[Value], max_batch: usize, v: usize, batch: usize) -> std::ops::Range<usize> {
    let value = &values[v];
    let start = value.offset * max_batch;
    start..start + value.floats(batch)
}

/// An s8 value's bytes inside its arena block.
fn s8_view(data: &[f32], elements: usize) -> &[i8] {
    assert!(elements <= data.len() * 4, "s8 value outside its block");
    // SAFETY: the bytes lie inside `data` (asserted), i8 has no alignment or validity
    // requirement, and the shared borrow of `data` covers the returned slice's lifetime.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<i8>(), elements) }
}

fn s8_view_mut(data: &mut [f32], elements: usize) -> &mut [i8] {
    assert!(elements <= data.len() * 4, "s8 value outside its block");
    // SAFETY: as in `s8_view`, with the exclusive borrow of `data`.
    unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<i8>(), elements) }
}

impl Engine for CpuEngine {
    fn inputs(&self) -> &[IoDesc] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoDesc] {
        &self.outputs
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn run(
        &mut self,
        batch: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> EngineResult<()> {
        self.run_with(batch, inputs, outputs, &mut |_, _, _| {})
    }
}

/// Where the values of one run are: their arena blocks and NHWC dimensions for `batch` images.
struct Shapes<'p> {
    values: &'p [Value],
    max_batch: usize,
    batch: usize,
}

impl Shapes<'_> {
    fn at(&self, v: usize) -> std::ops::Range<usize> {
        region(self.values, self.max_batch, v, self.batch)
    }

    fn nhwc_dims(&self, v: usize) -> [usize; 4] {
        let [h, w, c] = self.values[v].hwc();
        [self.batch, h, w, c]
    }

    fn nhwc<'a>(&self, data: &'a [f32], v: usize) -> EngineResult<Nhwc<'a>> {
        Nhwc::new(data, self.nhwc_dims(v)).map_err(|e| EngineError::Invalid(e.to_string()))
    }

    fn nhwc_mut<'a>(&self, data: &'a mut [f32], v: usize) -> EngineResult<NhwcMut<'a>> {
        NhwcMut::new(data, self.nhwc_dims(v)).map_err(|e| EngineError::Invalid(e.to_string()))
    }
}

/// One step's view of the arena: the block it writes, borrowed mutably, beside shared views of the
/// blocks it reads. Liveness assignment keeps a step's output apart from its inputs; `read`
/// checks it.
struct Reads<'a> {
    base: *const f32,
    len: usize,
    write: std::ops::Range<usize>,
    _arena: std::marker::PhantomData<&'a [f32]>,
}

impl<'a> Reads<'a> {
    fn split(arena: &'a mut [f32], write: std::ops::Range<usize>) -> (Reads<'a>, &'a mut [f32]) {
        assert!(
            write.start <= write.end && write.end <= arena.len(),
            "arena write out of bounds"
        );
        let len = arena.len();
        let base = arena.as_mut_ptr();
        // SAFETY: the range is inside the arena (asserted); `read` only hands out ranges disjoint
        // from it, so this mutable slice is never aliased while `'a` lasts.
        let out = unsafe { std::slice::from_raw_parts_mut(base.add(write.start), write.len()) };
        let reads = Reads {
            base,
            len,
            write,
            _arena: std::marker::PhantomData,
        };
        (reads, out)
    }

    fn read(&self, r: std::ops::Range<usize>) -> &'a [f32] {
        assert!(
            r.start <= r.end && r.end <= self.len,
            "arena read out of bounds"
        );
        assert!(
            r.end <= self.write.start || self.write.end <= r.start,
            "arena regions overlap"
        );
        // SAFETY: inside the arena and disjoint from the only mutable view (asserted above);
        // read ranges may overlap one another, they are only read.
        unsafe { std::slice::from_raw_parts(self.base.add(r.start), r.len()) }
    }
}

/// The operands every convolution step has: its input and output blocks and the residual it
/// adds, for either precision.
struct ConvOperands<'a> {
    input: &'a [f32],
    output: &'a mut [f32],
    residual: Option<Nhwc<'a>>,
}

fn conv_operands<'a>(
    shapes: &Shapes<'_>,
    arena: &'a mut [f32],
    input: usize,
    output: usize,
    residual: Option<usize>,
) -> EngineResult<ConvOperands<'a>> {
    let (reads, y) = Reads::split(arena, shapes.at(output));
    Ok(ConvOperands {
        input: reads.read(shapes.at(input)),
        output: y,
        residual: match residual {
            Some(r) => Some(shapes.nhwc(reads.read(shapes.at(r)), r)?),
            None => None,
        },
    })
}

/// The views of a step with one input and one output.
fn in_out<'a>(
    shapes: &Shapes<'_>,
    arena: &'a mut [f32],
    input: usize,
    output: usize,
) -> (&'a [f32], &'a mut [f32]) {
    let (reads, y) = Reads::split(arena, shapes.at(output));
    (reads.read(shapes.at(input)), y)
}

/// Outputs smaller than this (in floats) are computed by the calling thread alone: waking the
/// others costs more than it saves.
const PARALLEL_MIN: usize = 1 << 15;

/// The output pointer handed to the pool's threads, each writing its own rows.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the threads write disjoint parts (see `split_rows`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Calls `f(rows, part)` on contiguous parts of `out` made of whole rows of `row_len` floats, one
/// part per thread of the pool (the caller alone for small outputs). Allocates nothing.
fn split_rows(
    ctx: &Context,
    out: &mut [f32],
    row_len: usize,
    f: &(dyn Fn(std::ops::Range<usize>, &mut [f32]) + Sync),
) {
    let rows = out.len() / row_len.max(1);
    let threads = if out.len() < PARALLEL_MIN {
        1
    } else {
        ctx.threads().min(rows)
    };
    if threads <= 1 {
        f(0..rows, out);
        return;
    }
    let base = SharedOut(out.as_mut_ptr());
    ctx.pool().run(&|t| {
        if t >= threads {
            return;
        }
        let (first, end) = (rows * t / threads, rows * (t + 1) / threads);
        // SAFETY: thread indices are distinct, so the row ranges are disjoint, and all lie
        // inside `out`, which is borrowed exclusively for the whole run.
        let part = unsafe {
            std::slice::from_raw_parts_mut(base.get().add(first * row_len), (end - first) * row_len)
        };
        f(first..end, part);
    });
}

/// A binary operand's data: its arena block for a value, the step's own data for a constant.
fn operand_data<'a>(o: &'a generic::Operand, reads: &Reads<'a>, shapes: &Shapes<'_>) -> &'a [f32] {
    match o {
        generic::Operand::Value(v) => reads.read(shapes.at(*v)),
        generic::Operand::Constant(c) => c.as_slice(),
    }
}

fn run_step(step: &Step, shapes: &Shapes<'_>, memory: &mut Memory) -> EngineResult<()> {
    let kernel = |e: tao_kernels::KernelError| EngineError::Invalid(e.to_string());
    let ctx = &memory.ctx;
    match step {
        Step::ToNhwc { src, dst } => {
            let (x, y) = in_out(shapes, &mut memory.arena, *src, *dst);
            nchw_to_nhwc(ctx, x, shapes.nhwc_mut(y, *dst)?).map_err(kernel)
        }
        Step::ToNchw { src, dst } => {
            let (x, y) = in_out(shapes, &mut memory.arena, *src, *dst);
            nhwc_to_nchw(ctx, shapes.nhwc(x, *src)?, y).map_err(kernel)
        }
        Step::Conv {
            node,
            conv,
            input,
            output,
            residual,
        } => {
            let ops = conv_operands(shapes, &mut memory.arena, *input, *output, *residual)?;
            let residual = ops.residual.map_or(Residual::None, Residual::Tensor);
            let x = shapes.nhwc(ops.input, *input)?;
            let y = shapes.nhwc_mut(ops.output, *output)?;
            conv.execute(ctx, x, y, residual, &mut memory.scratch)
                .map_err(|e| kernel_error(node, "Conv", e))
        }
        Step::ConvInt8 {
            node,
            conv,
            input,
            input_nchw,
            output,
            residual,
        } => {
            let ops = conv_operands(shapes, &mut memory.arena, *input, *output, *residual)?;
            let x_dims = shapes.nhwc_dims(*input);
            let x = if *input_nchw {
                let [n, h, w, c] = x_dims;
                QInput::F32Nchw {
                    data: ops.input,
                    dims: [n, c, h, w],
                }
            } else if shapes.values[*input].s8_scale.is_some() {
                let elements = x_dims.iter().product();
                QInput::S8(NhwcI8::new(s8_view(ops.input, elements), x_dims))
            } else {
                QInput::F32(shapes.nhwc(ops.input, *input)?)
            };
            let y = match shapes.values[*output].s8_scale {
                Some(scale) => {
                    let y_dims = shapes.nhwc_dims(*output);
                    let elements = y_dims.iter().product();
                    QOutput::S8 {
                        output: NhwcI8Mut::new(s8_view_mut(ops.output, elements), y_dims),
                        scale,
                    }
                }
                None => QOutput::F32(shapes.nhwc_mut(ops.output, *output)?),
            };
            memory.int8.run(node, conv, x, y, ops.residual)
        }
        Step::ConvTranspose {
            node,
            conv,
            input,
            output,
        } => {
            let (x, y) = in_out(shapes, &mut memory.arena, *input, *output);
            let (x, y) = (shapes.nhwc(x, *input)?, shapes.nhwc_mut(y, *output)?);
            conv.execute(ctx, x, y, Residual::None, &mut memory.scratch)
                .map_err(|e| kernel_error(node, "ConvTranspose", e))
        }
        Step::Pool {
            spec,
            input,
            output,
        } => {
            let (x, y) = in_out(shapes, &mut memory.arena, *input, *output);
            pool2d(
                ctx,
                spec,
                shapes.nhwc(x, *input)?,
                shapes.nhwc_mut(y, *output)?,
            )
            .map_err(kernel)
        }
        Step::GlobalPool {
            kind,
            input,
            output,
        } => {
            let (x, y) = in_out(shapes, &mut memory.arena, *input, *output);
            global_pool(
                ctx,
                *kind,
                shapes.nhwc(x, *input)?,
                shapes.nhwc_mut(y, *output)?,
            )
            .map_err(kernel)
        }
        Step::Elementwise { f, inputs, output } => {
            let (reads, w) = Reads::split(&mut memory.arena, shapes.at(*output));
            let operand = |k: usize| -> EngineResult<&[f32]> {
                let v = inputs.get(k).ok_or_else(|| {
                    EngineError::Invalid("elementwise step lost an operand".into())
                })?;
                Ok(reads.read(shapes.at(*v)))
            };
            match f {
                Elementwise::Activation(act) => {
                    let x = operand(0)?;
                    split_rows(ctx, w, 1, &|r, part| {
                        for (y, x) in part.iter_mut().zip(&x[r]) {
                            *y = act.apply(*x);
                        }
                    });
                }
                Elementwise::Add => {
                    let (a, b) = (operand(0)?, operand(1)?);
                    split_rows(ctx, w, 1, &|r, part| {
                        for ((y, a), b) in part.iter_mut().zip(&a[r.clone()]).zip(&b[r]) {
                            *y = a + b;
                        }
                    });
                }
            }
            Ok(())
        }
        Step::Binary {
            kind,
            f,
            shape,
            a,
            b,
            output,
            ..
        } => {
            let (reads, w) = Reads::split(&mut memory.arena, shapes.at(*output));
            let args = generic::BinaryArgs {
                shape,
                batch: shapes.batch,
                a: operand_data(a, &reads, shapes),
                b: operand_data(b, &reads, shapes),
            };
            let row = generic::binary_row_len(shape);
            split_rows(ctx, w, row, &|r, part| {
                generic::broadcast_binary(*kind, *f, &args, r.start, part)
            });
            Ok(())
        }
        Step::Unary {
            kind,
            f,
            input,
            output,
            ..
        } => {
            let (x, y) = in_out(shapes, &mut memory.arena, *input, *output);
            split_rows(ctx, y, 1, &|r, part| generic::unary(*kind, *f, &x[r], part));
            Ok(())
        }
        Step::Reduce {
            kind,
            reduced,
            inner,
            input,
            output,
            ..
        } => {
            let (x, y) = in_out(shapes, &mut memory.arena, *input, *output);
            let block = reduced * inner;
            split_rows(ctx, y, *inner, &|r, part| {
                let x = &x[r.start * block..r.end * block];
                generic::reduce(*kind, r.len(), *reduced, *inner, x, part)
            });
            Ok(())
        }
        Step::Concat {
            outer,
            blocks,
            inputs,
            output,
        } => {
            let (reads, w) = Reads::split(&mut memory.arena, shapes.at(*output));
            generic::concat(
                outer * shapes.batch,
                blocks,
                |k| reads.read(shapes.at(inputs[k])),
                w,
            );
            Ok(())
        }
        Step::Rearrange {
            map, input, output, ..
        } => {
            let (x, y) = in_out(shapes, &mut memory.arena, *input, *output);
            generic::rearrange(map, x, y);
            Ok(())
        }
        Step::Reference {
            node,
            inputs,
            outputs,
        } => {
            let arena = &mut memory.arena;
            let mut tensors: Vec<Option<Tensor>> = Vec::with_capacity(inputs.len());
            for input in inputs {
                tensors.push(match input {
                    None => None,
                    Some(RefInput::Constant(t)) => Some((**t).clone()),
                    Some(RefInput::Value(v)) => {
                        let mut shape = shapes.values[*v].shape.clone();
                        shape[0] = shapes.batch;
                        Some(Tensor::from_f32(shape, arena[shapes.at(*v)].to_vec())?)
                    }
                });
            }
            let refs: Vec<Option<&Tensor>> = tensors.iter().map(Option::as_ref).collect();
            let results = node
                .op
                .eval(&refs, node.outputs.len())
                .map_err(|e| e.at(&node.name, node.op_type()))?;
            for (v, t) in outputs.iter().zip(results) {
                let data = t.to_f32_vec();
                let dst = &mut arena[shapes.at(*v)];
                if data.len() != dst.len() {
                    return Err(kernel_error(
                        &node.name,
                        node.op_type(),
                        format!(
                            "produced {} values where {} were planned",
                            data.len(),
                            dst.len()
                        ),
                    ));
                }
                dst.copy_from_slice(&data);
            }
            Ok(())
        }
    }
}
