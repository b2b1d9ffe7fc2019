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

use crate::backend::{Backend, BuildConfig, Engine, EngineError, EngineResult, IoDesc, Precision};
use crate::device::cpu_fingerprint;
use crate::plan::{Plan, PlanBuilder};

pub const BACKEND_NAME: &str = "cpu";
const GRAPH_SECTION: &str = "graph.onnx";
const CHOICES_SECTION: &str = "cpu.choices";

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
        let mut algorithms = HashMap::new();
        for line in choices.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                [kind, algorithm, node] => {
                    algorithms.insert(node.to_string(), (kind.to_string(), algorithm.to_string()));
                }
                _ => {
                    if let Some(n) = line.strip_prefix("max-batch ") {
                        max_batch = n
                            .parse()
                            .map_err(|_| EngineError::Invalid(format!("bad plan line `{line}`")))?;
                    }
                }
            }
        }
        let mut stored = FromPlan { plan, algorithms };
        let program = lower(&graph, &mut stored)?;
        Ok(Box::new(CpuEngine::new(program, max_batch, threads)?))
    }
}

/// Kernel choices read back from a plan.
struct FromPlan<'p> {
    plan: &'p Plan,
    algorithms: HashMap<String, (String, String)>,
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

/// A runnable CPU engine: the program, its arena for `max_batch` images and the kernel context.
pub struct CpuEngine {
    program: Program,
    max_batch: usize,
    arena: Vec<f32>,
    scratch: Vec<f32>,
    ctx: Context,
    int8: int8::Int8Runtime,
    inputs: Vec<IoDesc>,
    outputs: Vec<IoDesc>,
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
            int8: int8::Int8Runtime::new(&program, threads)?,
            inputs: program.inputs.iter().map(|(d, _)| d.clone()).collect(),
            outputs: program.outputs.iter().map(|(d, _)| d.clone()).collect(),
            arena: vec![0.0; arena_len],
            // Scratch is sized per image by the kernels; batches reuse it.
            scratch: vec![0.0; scratch_len.max(1)],
            program,
            max_batch,
            ctx,
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
        self.run(batch, inputs, outputs)?;
        let values = &self.program.values;
        // The inputs as given: their arena blocks may already hold later values, so they are
        // also copied back for the step-by-step re-run below.
        for ((desc, v), data) in self.program.inputs.iter().zip(inputs) {
            observe(&desc.name, data);
            self.arena[region(values, self.max_batch, *v, batch)].copy_from_slice(data);
        }
        // Re-run step by step: cheaper to write than hooks in the hot loop, and calibration is offline.
        for step in &self.program.steps {
            run_step(
                step,
                values,
                self.max_batch,
                batch,
                &mut self.arena,
                &mut self.scratch,
                &self.ctx,
                &mut self.int8,
            )?;
            for (v, writes) in lower::step_values(step) {
                // Layout conversions repeat a tensor already seen.
                let conversion = matches!(step, Step::ToNhwc { .. } | Step::ToNchw { .. });
                if writes && !conversion {
                    observe(
                        &values[v].name,
                        &self.arena[region(values, self.max_batch, v, batch)],
                    );
                }
            }
        }
        Ok(())
    }

    /// Runs once like [`Engine::run`] and returns each step's description and time.
    pub fn profile(
        &mut self,
        batch: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> EngineResult<Vec<(String, std::time::Duration)>> {
        self.run(batch, inputs, outputs)?;
        let values = &self.program.values;
        let mut times = Vec::with_capacity(self.program.steps.len());
        for step in &self.program.steps {
            let t = std::time::Instant::now();
            run_step(
                step,
                values,
                self.max_batch,
                batch,
                &mut self.arena,
                &mut self.scratch,
                &self.ctx,
                &mut self.int8,
            )?;
            times.push((step.describe(values), t.elapsed()));
        }
        Ok(times)
    }

    /// Bytes of activation memory held for `max_batch` images.
    pub fn arena_bytes(&self) -> usize {
        self.arena.len() * 4
    }
}

/// The slice of value `v` for `batch` images. Values are laid out image-major inside their block.
fn region(values: &[Value], max_batch: usize, v: usize, batch: usize) -> std::ops::Range<usize> {
    let value = &values[v];
    let start = value.offset * max_batch;
    start..start + value.per_image() * batch
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
            self.arena[region(values, self.max_batch, *v, batch)].copy_from_slice(data);
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
        for step in &self.program.steps {
            run_step(
                step,
                values,
                self.max_batch,
                batch,
                &mut self.arena,
                &mut self.scratch,
                &self.ctx,
                &mut self.int8,
            )?;
        }
        for ((_, v), out) in self.program.outputs.iter().zip(outputs.iter_mut()) {
            out.copy_from_slice(&self.arena[region(values, self.max_batch, *v, batch)]);
        }
        Ok(())
    }
}

/// Splits the arena into a read view of `reads` and a write view of `write`. Liveness assignment
/// guarantees a step's output block never overlaps the blocks it reads.
fn views<'a>(
    arena: &'a mut [f32],
    reads: &[std::ops::Range<usize>],
    write: std::ops::Range<usize>,
) -> (Vec<&'a [f32]>, &'a mut [f32]) {
    for r in reads {
        assert!(
            r.end <= write.start || write.end <= r.start,
            "arena regions overlap"
        );
    }
    assert!(write.end <= arena.len());
    let base = arena.as_mut_ptr();
    // SAFETY: every range is inside the arena (asserted above and by construction), and the written
    // range is disjoint from every read range (asserted above), so the shared and the mutable slices
    // never alias. Read ranges may overlap one another; they are only read.
    unsafe {
        let reads = reads
            .iter()
            .map(|r| std::slice::from_raw_parts(base.add(r.start), r.len()))
            .collect();
        let write = std::slice::from_raw_parts_mut(base.add(write.start), write.len());
        (reads, write)
    }
}

fn nhwc_dims(v: &Value, batch: usize) -> [usize; 4] {
    let [h, w, c] = v.hwc();
    [batch, h, w, c]
}

// The FP32 and the INT8 kernels each bring their context; the rest is the step's memory.
#[allow(clippy::too_many_arguments)]
fn run_step(
    step: &Step,
    values: &[Value],
    max_batch: usize,
    batch: usize,
    arena: &mut [f32],
    scratch: &mut [f32],
    ctx: &Context,
    int8: &mut int8::Int8Runtime,
) -> EngineResult<()> {
    let at = |v: usize| region(values, max_batch, v, batch);
    let kernel = |e: tao_kernels::KernelError| EngineError::Invalid(e.to_string());
    match step {
        Step::ToNhwc { src, dst } => {
            let (r, w) = views(arena, &[at(*src)], at(*dst));
            nchw_to_nhwc(
                ctx,
                r[0],
                NhwcMut::new(w, nhwc_dims(&values[*dst], batch)).map_err(kernel)?,
            )
            .map_err(kernel)
        }
        Step::ToNchw { src, dst } => {
            let (r, w) = views(arena, &[at(*src)], at(*dst));
            nhwc_to_nchw(
                ctx,
                Nhwc::new(r[0], nhwc_dims(&values[*src], batch)).map_err(kernel)?,
                w,
            )
            .map_err(kernel)
        }
        Step::Conv {
            node,
            conv,
            input,
            output,
            residual,
        } => {
            let mut reads = vec![at(*input)];
            reads.extend(residual.map(at));
            let (r, w) = views(arena, &reads, at(*output));
            let x = Nhwc::new(r[0], nhwc_dims(&values[*input], batch)).map_err(kernel)?;
            let y = NhwcMut::new(w, nhwc_dims(&values[*output], batch)).map_err(kernel)?;
            let res = match residual {
                Some(rv) => Residual::Tensor(
                    Nhwc::new(r[1], nhwc_dims(&values[*rv], batch)).map_err(kernel)?,
                ),
                None => Residual::None,
            };
            conv.execute(ctx, x, y, res, scratch)
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
            let mut reads = vec![at(*input)];
            reads.extend(residual.map(at));
            let (r, w) = views(arena, &reads, at(*output));
            let x = if *input_nchw {
                let [h, wd, c] = values[*input].hwc();
                tao_kernels_int8::QInput::F32Nchw {
                    data: r[0],
                    dims: [batch, c, h, wd],
                }
            } else {
                tao_kernels_int8::QInput::F32(
                    Nhwc::new(r[0], nhwc_dims(&values[*input], batch)).map_err(kernel)?,
                )
            };
            let y = NhwcMut::new(w, nhwc_dims(&values[*output], batch)).map_err(kernel)?;
            let res = match residual {
                Some(rv) => Some(Nhwc::new(r[1], nhwc_dims(&values[*rv], batch)).map_err(kernel)?),
                None => None,
            };
            int8.run(node, conv, x, y, res)
        }
        Step::ConvTranspose {
            node,
            conv,
            input,
            output,
        } => {
            let (r, w) = views(arena, &[at(*input)], at(*output));
            let x = Nhwc::new(r[0], nhwc_dims(&values[*input], batch)).map_err(kernel)?;
            let y = NhwcMut::new(w, nhwc_dims(&values[*output], batch)).map_err(kernel)?;
            conv.execute(ctx, x, y, Residual::None, scratch)
                .map_err(|e| kernel_error(node, "ConvTranspose", e))
        }
        Step::Pool {
            spec,
            input,
            output,
        } => {
            let (r, w) = views(arena, &[at(*input)], at(*output));
            let x = Nhwc::new(r[0], nhwc_dims(&values[*input], batch)).map_err(kernel)?;
            let y = NhwcMut::new(w, nhwc_dims(&values[*output], batch)).map_err(kernel)?;
            pool2d(ctx, spec, x, y).map_err(kernel)
        }
        Step::GlobalPool {
            kind,
            input,
            output,
        } => {
            let (r, w) = views(arena, &[at(*input)], at(*output));
            let x = Nhwc::new(r[0], nhwc_dims(&values[*input], batch)).map_err(kernel)?;
            let y = NhwcMut::new(w, nhwc_dims(&values[*output], batch)).map_err(kernel)?;
            global_pool(ctx, *kind, x, y).map_err(kernel)
        }
        Step::Elementwise { f, inputs, output } => {
            let reads: Vec<_> = inputs.iter().map(|v| at(*v)).collect();
            let (r, w) = views(arena, &reads, at(*output));
            match f {
                Elementwise::Activation(act) => {
                    for (y, x) in w.iter_mut().zip(r[0]) {
                        *y = act.apply(*x);
                    }
                }
                Elementwise::Add => {
                    for ((y, a), b) in w.iter_mut().zip(r[0]).zip(r[1]) {
                        *y = a + b;
                    }
                }
            }
            Ok(())
        }
        Step::Binary {
            f,
            shape,
            a,
            b,
            output,
            ..
        } => {
            let reads: Vec<_> = [a, b]
                .iter()
                .filter_map(|o| match o {
                    generic::Operand::Value(v) => Some(at(*v)),
                    generic::Operand::Constant(_) => None,
                })
                .collect();
            let (r, w) = views(arena, &reads, at(*output));
            let mut next = r.into_iter();
            let x = operand_slice(a, &mut next);
            let z = operand_slice(b, &mut next);
            let (Some(x), Some(z)) = (x, z) else {
                return Err(EngineError::Invalid("binary step lost an operand".into()));
            };
            generic::broadcast_binary(*f, shape, batch, x, z, w);
            Ok(())
        }
        Step::Unary {
            kind,
            f,
            input,
            output,
            ..
        } => {
            let (r, w) = views(arena, &[at(*input)], at(*output));
            generic::unary(*kind, *f, r[0], w);
            Ok(())
        }
        Step::Reduce {
            kind,
            outer,
            reduced,
            inner,
            input,
            output,
        } => {
            let (r, w) = views(arena, &[at(*input)], at(*output));
            generic::reduce(*kind, outer * batch, *reduced, *inner, r[0], w);
            Ok(())
        }
        Step::Concat {
            outer,
            blocks,
            inputs,
            output,
        } => {
            let reads: Vec<_> = inputs.iter().map(|v| at(*v)).collect();
            let (r, w) = views(arena, &reads, at(*output));
            generic::concat(outer * batch, blocks, &r, w);
            Ok(())
        }
        Step::Reference {
            node,
            inputs,
            outputs,
        } => {
            let mut tensors: Vec<Option<Tensor>> = Vec::with_capacity(inputs.len());
            for input in inputs {
                tensors.push(match input {
                    None => None,
                    Some(RefInput::Constant(t)) => Some((**t).clone()),
                    Some(RefInput::Value(v)) => {
                        let mut shape = values[*v].shape.clone();
                        shape[0] = batch;
                        Some(Tensor::from_f32(shape, arena[at(*v)].to_vec())?)
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
                let dst = &mut arena[at(*v)];
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

/// A binary operand's data: the next arena view for a value, the step's own data for a constant.
fn operand_slice<'a>(
    o: &'a generic::Operand,
    views: &mut impl Iterator<Item = &'a [f32]>,
) -> Option<&'a [f32]> {
    match o {
        generic::Operand::Value(_) => views.next(),
        generic::Operand::Constant(c) => Some(c.as_slice()),
    }
}
