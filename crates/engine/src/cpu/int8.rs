//! INT8 execution on the CPU backend.
//!
//! A build with [`CpuInt8Backend`] lowers the graph like the FP32 build, except that each 2-D
//! convolution is offered to [`PrepareInt8`] first. A convolution runs in INT8 when
//!
//! * the calibration table has a scale for its input tensor (names as the cache's, placed on the
//!   graph with [`CalibrationCache::map_to_graph`]),
//! * the INT8 kernel supports it (`tao-kernels-int8`: any dense or grouped 2-D convolution whose
//!   reduction fits an i32; depthwise convolutions stay FP32, where INT8 gains nothing),
//! * and the [`Int8Policy`] does not keep it in FP32: by default the output heads (convolutions
//!   with no convolution after them, whose outputs are the network's answers) stay FP32, and a
//!   list of nodes may be forced to FP32, e.g. those whose measured error is too large
//!   ([`measure_layer_errors`], [`Int8Policy::from_errors`]).
//!
//! Everything else (pooling, transposed convolutions, element-wise maths) runs in FP32 on the same
//! arena. An INT8 convolution reads its f32 input (NHWC, or a network input still in NCHW),
//! quantizes it with the input tensor's scale into a padded copy, accumulates in i32 and writes
//! f32 through the fused epilogue (dequantise, bias, activation, residual), so it drops into the
//! program in place of the FP32 step. Where the input is non-negative by construction (a ReLU,
//! ReLU6 or sigmoid output, also through pooling and concatenation) and the kernel is 3 wide with
//! horizontal stride 1, the kernel uses its exact row-Winograd algorithm (fewer products).
//!
//! The plan stores, per INT8 convolution, the packed int8 weights with their scales (section
//! `packed-int8/<node>`), and the decision for every convolution with its reason
//! ([`DECISIONS_SECTION`]); loading needs no calibration table.

use std::collections::{HashMap, HashSet};

use tao_graph::ir::{Graph, Op, UnaryOp};
use tao_kernels::{
    Conv2dSpec, ConvTranspose2dSpec, Nhwc, NhwcMut, PreparedConv, PreparedConvTranspose, Residual,
};
use tao_kernels_int8::{PreparedQConv, QContext, QConvOptions, QInput, QOutput};

use super::lower::{Prepared, Program, Step, kernel_error, lower};
use super::{CpuBackend, CpuEngine, PrepareFresh, build_plan};
use crate::backend::{Backend, BuildConfig, Engine, EngineError, EngineResult, Precision};
use crate::calibration::CalibrationCache;
use crate::device::cpu_fingerprint;
use crate::plan::{Plan, PlanBuilder};

/// Plan section listing every convolution's precision and the reason (`node\tprecision\treason`).
pub const DECISIONS_SECTION: &str = "cpu.int8";

/// Which convolutions stay in FP32 although they could run in INT8.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Policy {
    /// Keep convolutions with no convolution downstream (detection heads, landmark maps) in FP32.
    pub keep_heads_fp32: bool,
    /// Keep convolutions that read a graph input directly in FP32.
    pub keep_first_fp32: bool,
    /// Node names that stay FP32.
    pub fp32_nodes: HashSet<String>,
    /// INT8 convolutions hand activations to INT8 readers as s8 (requantised in the epilogue);
    /// off, every activation goes through memory as f32 (same results, slower; for comparison).
    pub s8_activations: bool,
}

impl Default for Int8Policy {
    fn default() -> Int8Policy {
        Int8Policy {
            keep_heads_fp32: true,
            keep_first_fp32: false,
            fp32_nodes: HashSet::new(),
            s8_activations: true,
        }
    }
}

impl Int8Policy {
    /// The default policy plus every node whose measured error exceeds `max_error`.
    pub fn from_errors(errors: &[LayerError], max_error: f32) -> Int8Policy {
        Int8Policy {
            fp32_nodes: errors
                .iter()
                .filter(|e| e.relative_rms > max_error || e.relative_rms.is_nan())
                .map(|e| e.node.clone())
                .collect(),
            ..Int8Policy::default()
        }
    }

    /// Text folded into the engine-cache key.
    fn canonical(&self) -> String {
        let mut nodes: Vec<&str> = self.fp32_nodes.iter().map(String::as_str).collect();
        nodes.sort_unstable();
        format!(
            "heads-fp32={};first-fp32={};s8-activations={};fp32-nodes={}",
            self.keep_heads_fp32,
            self.keep_first_fp32,
            self.s8_activations,
            nodes.join(",")
        )
    }
}

/// The precision chosen for one convolution and why.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerChoice {
    pub node: String,
    pub precision: Precision,
    pub reason: String,
}

/// Prepares INT8 kernels where the table and the policy allow, FP32 ones elsewhere.
pub struct PrepareInt8 {
    /// Graph tensor name → activation scale.
    scales: HashMap<String, f32>,
    heads: HashSet<String>,
    first: HashSet<String>,
    /// Tensors that cannot be negative (ReLU-like outputs and what pooling or concatenation
    /// makes of them): their convolutions may use the row-Winograd INT8 algorithm.
    nonnegative: HashSet<String>,
    policy: Int8Policy,
    /// Decisions in lowering order.
    pub choices: Vec<LayerChoice>,
    /// Cache entries that name no tensor of the graph.
    pub unmapped: Vec<String>,
}

impl PrepareInt8 {
    /// `graph` is the optimised graph that will be lowered.
    pub fn new(graph: &Graph, calibration: &CalibrationCache, policy: Int8Policy) -> PrepareInt8 {
        let mapping = calibration.map_to_graph(graph);
        let by_name: HashMap<&str, f32> = calibration
            .scales
            .iter()
            .map(|(n, s)| (n.as_str(), *s))
            .collect();
        let scales = mapping
            .mapped
            .iter()
            .filter_map(|(cache_name, tensor)| {
                by_name
                    .get(cache_name.as_str())
                    .map(|s| (tensor.clone(), *s))
            })
            .collect();
        let inputs: HashSet<&str> = graph.inputs.iter().map(|i| i.name.as_str()).collect();
        let mut heads = HashSet::new();
        let mut first = HashSet::new();
        let mut below: HashMap<String, bool> = HashMap::new();
        for node in &graph.nodes {
            if !matches!(node.op, Op::Conv(_)) {
                continue;
            }
            if node.input(0).is_some_and(|x| inputs.contains(x)) {
                first.insert(node.name.clone());
            }
            let feeds_conv = node
                .outputs
                .iter()
                .any(|t| conv_downstream(graph, t, &mut below));
            if !feeds_conv {
                heads.insert(node.name.clone());
            }
        }
        PrepareInt8 {
            scales,
            heads,
            first,
            nonnegative: nonnegative_tensors(graph),
            policy,
            choices: Vec::new(),
            unmapped: mapping.unmapped,
        }
    }

    fn choose(&mut self, node: &str, spec: &Conv2dSpec, input: &str) -> Result<f32, String> {
        if self.policy.fp32_nodes.contains(node) {
            return Err("kept in FP32 by the policy (node list)".into());
        }
        if self.policy.keep_heads_fp32 && self.heads.contains(node) {
            return Err("output head (no convolution after it)".into());
        }
        if self.policy.keep_first_fp32 && self.first.contains(node) {
            return Err("reads the network input".into());
        }
        if spec.groups > 1 && spec.groups == spec.in_channels {
            return Err("depthwise: no INT8 kernel".into());
        }
        match self.scales.get(input) {
            Some(&s) if s.is_finite() && s > 0.0 => Ok(s),
            Some(&s) => Err(format!("input `{input}` has an unusable scale {s}")),
            None => Err(format!("no calibration scale for input `{input}`")),
        }
    }

    fn record(&mut self, node: &str, precision: Precision, reason: String) {
        self.choices.push(LayerChoice {
            node: node.to_owned(),
            precision,
            reason,
        });
    }
}

/// Tensors whose every element is >= 0 by construction, in one pass over the (topologically
/// ordered) nodes: outputs of ReLU, sigmoid and clips with a lower bound >= 0, and pooling,
/// identity and concatenation of such tensors. Anything else (a network input included) is not.
fn nonnegative_tensors(graph: &Graph) -> HashSet<String> {
    let mut set: HashSet<String> = HashSet::new();
    for node in &graph.nodes {
        let from_inputs = |set: &HashSet<String>| {
            let mut inputs = node.present_inputs().peekable();
            inputs.peek().is_some() && inputs.all(|i| set.contains(i))
        };
        let nonnegative = match &node.op {
            Op::Unary(UnaryOp::Relu) | Op::Unary(UnaryOp::Sigmoid) => true,
            Op::Clip => node
                .input(1)
                .and_then(|n| graph.constants.get(n))
                .filter(|t| t.len() == 1)
                .is_some_and(|t| t.to_f32_vec()[0] >= 0.0),
            Op::Pool(_) | Op::GlobalPool(_) | Op::Identity => {
                node.input(0).is_some_and(|i| set.contains(i))
            }
            Op::Concat(_) => from_inputs(&set),
            _ => false,
        };
        if nonnegative {
            set.extend(node.outputs.iter().cloned());
        }
    }
    set
}

/// Whether a convolution is reachable from `tensor` (memoised per tensor).
fn conv_downstream(graph: &Graph, tensor: &str, memo: &mut HashMap<String, bool>) -> bool {
    if let Some(&known) = memo.get(tensor) {
        return known;
    }
    // Marked first so that a malformed cyclic graph ends the search.
    memo.insert(tensor.to_owned(), false);
    let mut found = false;
    for i in graph.consumers(tensor) {
        let node = &graph.nodes[i];
        if matches!(node.op, Op::Conv(_) | Op::ConvTranspose(_))
            || node.outputs.iter().any(|t| conv_downstream(graph, t, memo))
        {
            found = true;
            break;
        }
    }
    memo.insert(tensor.to_owned(), found);
    found
}

impl Prepared for PrepareInt8 {
    fn s8_activations(&self) -> bool {
        self.policy.s8_activations
    }

    fn conv(
        &mut self,
        node: &str,
        spec: &Conv2dSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
    ) -> EngineResult<PreparedConv> {
        PrepareFresh.conv(node, spec, weights, bias)
    }

    fn conv_transpose(
        &mut self,
        node: &str,
        spec: &ConvTranspose2dSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
    ) -> EngineResult<PreparedConvTranspose> {
        PrepareFresh.conv_transpose(node, spec, weights, bias)
    }

    fn conv_int8(
        &mut self,
        node: &str,
        spec: &Conv2dSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
        input: &str,
    ) -> EngineResult<Option<PreparedQConv>> {
        let scale = match self.choose(node, spec, input) {
            Ok(s) => s,
            Err(reason) => {
                self.record(node, Precision::Fp32, reason);
                return Ok(None);
            }
        };
        let options = QConvOptions {
            nonnegative_input: self.nonnegative.contains(input),
            algorithm: None,
        };
        match PreparedQConv::prepare_with(spec, weights, bias, scale, options) {
            Ok(conv) => {
                self.record(
                    node,
                    Precision::Int8,
                    format!(
                        "{}, input `{input}` scale {scale:e}{}",
                        conv.algorithm().name(),
                        if options.nonnegative_input {
                            " (non-negative)"
                        } else {
                            ""
                        }
                    ),
                );
                Ok(Some(conv))
            }
            // Shapes the INT8 kernel rejects (e.g. reductions past the i32 range) stay FP32.
            Err(e) => {
                self.record(node, Precision::Fp32, format!("no INT8 kernel: {e}"));
                Ok(None)
            }
        }
    }
}

/// What follows the CPU fingerprint in an INT8 backend's device string, before the table's digest:
/// a plan whose device is the CPU's plus this mark was built here, from some calibration table.
pub const CALIBRATION_DEVICE_MARK: &str = "; int8 calibration ";

/// The CPU backend building INT8 engines from a calibration table. Plans it builds load with
/// [`CpuBackend`] (same backend name); the table's content is part of [`Backend::device`], so
/// engine caches keep engines of different tables apart.
#[derive(Clone, Debug)]
pub struct CpuInt8Backend {
    pub calibration: CalibrationCache,
    pub policy: Int8Policy,
}

impl CpuInt8Backend {
    pub fn new(calibration: CalibrationCache) -> CpuInt8Backend {
        CpuInt8Backend {
            calibration,
            policy: Int8Policy::default(),
        }
    }

    /// Lowers `graph` (optimised) into an INT8 program and says what each convolution got.
    pub fn lower(&self, graph: &Graph) -> EngineResult<(Program, Vec<LayerChoice>)> {
        let mut prepared = PrepareInt8::new(graph, &self.calibration, self.policy.clone());
        let program = lower(graph, &mut prepared)?;
        Ok((program, prepared.choices))
    }
}

impl Backend for CpuInt8Backend {
    fn name(&self) -> &'static str {
        CpuBackend.name()
    }

    fn device(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(
            format!("{}\n{}", self.calibration, self.policy.canonical()).as_bytes(),
        );
        format!(
            "{}{CALIBRATION_DEVICE_MARK}{}",
            cpu_fingerprint(),
            hex::encode(&digest[..8])
        )
    }

    fn build(&self, graph: &Graph, config: &BuildConfig) -> EngineResult<PlanBuilder> {
        if config.precision != Precision::Int8 {
            return Err(EngineError::Invalid(format!(
                "the INT8 backend builds precision int8, not {}",
                config.precision.name()
            )));
        }
        let mut prepared = PrepareInt8::new(graph, &self.calibration, self.policy.clone());
        let builder = build_plan(graph, config, &mut prepared)?;
        let decisions: String = prepared
            .choices
            .iter()
            .map(|c| format!("{}\t{}\t{}\n", c.node, c.precision.name(), c.reason))
            .collect();
        Ok(builder.section(DECISIONS_SECTION, decisions.into_bytes()))
    }

    fn load(&self, plan: &Plan, threads: usize) -> EngineResult<Box<dyn Engine>> {
        CpuBackend.load(plan, threads)
    }
}

/// The decisions stored in a plan built by [`CpuInt8Backend`] (empty for FP32 plans).
pub fn plan_decisions(plan: &Plan) -> Vec<LayerChoice> {
    let Ok(bytes) = plan.section(DECISIONS_SECTION) else {
        return Vec::new();
    };
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| {
            let mut f = line.splitn(3, '\t');
            let (node, precision, reason) = (f.next()?, f.next()?, f.next()?);
            let precision = match precision {
                "int8" => Precision::Int8,
                "fp32" => Precision::Fp32,
                _ => return None,
            };
            Some(LayerChoice {
                node: node.to_owned(),
                precision,
                reason: reason.to_owned(),
            })
        })
        .collect()
}

/// Reads an INT8 convolution back from a plan.
pub(crate) fn load_conv(plan: &Plan, node: &str, spec: &Conv2dSpec) -> EngineResult<PreparedQConv> {
    let bytes = plan.section(&format!("packed-int8/{node}"))?;
    PreparedQConv::from_bytes(*spec, bytes).map_err(|e| kernel_error(node, "Conv", e))
}

/// Name of an INT8 convolution's plan section.
pub(crate) fn section_name(node: &str) -> String {
    format!("packed-int8/{node}")
}

/// The INT8 kernels' context (on the FP32 kernels' threads) and scratch memory of one engine
/// (none without INT8 steps).
#[derive(Debug, Default)]
pub(crate) struct Int8Runtime {
    ctx: Option<QContext>,
    scratch: Vec<u8>,
}

impl Int8Runtime {
    pub fn new(program: &Program, fp32: &tao_kernels::Context) -> EngineResult<Int8Runtime> {
        let threads = fp32.threads();
        let mut need = None;
        for step in &program.steps {
            if let Step::ConvInt8 { node, conv, .. } = step {
                let len = conv
                    .scratch_len(threads.max(1))
                    .ok_or_else(|| kernel_error(node, "Conv", "INT8 scratch size overflows"))?;
                need = Some(need.unwrap_or(0usize).max(len));
            }
        }
        let Some(len) = need else {
            return Ok(Int8Runtime::default());
        };
        let ctx = QContext::sharing(fp32.pool().clone());
        Ok(Int8Runtime {
            ctx: Some(ctx),
            scratch: vec![0; len],
        })
    }

    /// Runs one INT8 convolution step.
    pub fn run(
        &mut self,
        node: &str,
        conv: &PreparedQConv,
        input: QInput<'_>,
        output: QOutput<'_>,
        residual: Option<Nhwc<'_>>,
    ) -> EngineResult<()> {
        let Some(ctx) = &self.ctx else {
            return Err(kernel_error(node, "Conv", "engine has no INT8 context"));
        };
        let residual = residual.map_or(Residual::None, Residual::Tensor);
        conv.execute(ctx, input, output, residual, &mut self.scratch)
            .map_err(|e| kernel_error(node, "Conv", e))
    }
}

/// One convolution's INT8 error measured on real inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerError {
    pub node: String,
    /// `‖y_int8 − y_fp32‖₂ / ‖y_fp32‖₂` of the layer's output over all images, with both
    /// computed from the same FP32 input (the layer alone, no accumulated error).
    pub relative_rms: f32,
    /// Largest `|y_int8 − y_fp32|`.
    pub max_abs: f32,
}

/// Runs the FP32 engine on `images` (NCHW, one image each, for the graph's single input) and, for
/// every convolution the table gives an input scale, compares its INT8 result with the FP32 one
/// on the same input. `graph` is the optimised graph.
pub fn measure_layer_errors(
    graph: &Graph,
    calibration: &CalibrationCache,
    images: &[&[f32]],
    threads: usize,
) -> EngineResult<Vec<LayerError>> {
    let fp32 = lower(graph, &mut PrepareFresh)?;
    // Every convolution that could be INT8, whatever the policy says.
    let policy = Int8Policy {
        keep_heads_fp32: false,
        keep_first_fp32: false,
        ..Int8Policy::default()
    };
    let mut prepared = PrepareInt8::new(graph, calibration, policy);
    let quantized = lower(graph, &mut prepared)?;
    let mut convs: HashMap<&str, &PreparedQConv> = HashMap::new();
    for step in &quantized.steps {
        if let Step::ConvInt8 { node, conv, .. } = step {
            convs.insert(node.as_str(), conv);
        }
    }
    // (node, input, residual, output) tensor names of the FP32 convolutions to compare.
    let mut targets = Vec::new();
    for step in &fp32.steps {
        if let Step::Conv {
            node,
            input,
            output,
            residual,
            ..
        } = step
            && convs.contains_key(node.as_str())
        {
            let v = &fp32.values;
            targets.push((
                node.clone(),
                (v[*input].name.clone(), v[*input].hwc()),
                residual.map(|r| v[r].name.clone()),
                (v[*output].name.clone(), v[*output].hwc()),
            ));
        }
    }
    let wanted: HashSet<String> = targets
        .iter()
        .flat_map(|(_, i, r, o)| [Some(i.0.clone()), r.clone(), Some(o.0.clone())])
        .flatten()
        .collect();
    // Graph inputs are observed as given (NCHW); every other 4-D value in NHWC.
    let graph_inputs: HashSet<String> = fp32.inputs.iter().map(|(d, _)| d.name.clone()).collect();
    let mut engine = CpuEngine::new(fp32, 1, threads)?;
    let ctx = QContext::sharing(engine.memory.ctx.pool().clone());
    // Per node: Σ (diff²), Σ (ref²), max |diff|.
    let mut sums: HashMap<String, (f64, f64, f32)> = HashMap::new();
    for image in images {
        let mut seen: HashMap<String, Vec<f32>> = HashMap::new();
        let mut outputs: Vec<Vec<f32>> = engine
            .outputs()
            .iter()
            .map(|d| vec![0.0; d.elements_per_image()])
            .collect();
        let mut views: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        engine.run_observed(1, &[image], &mut views, &mut |name, data| {
            if wanted.contains(name) {
                seen.insert(name.to_owned(), data.to_vec());
            }
        })?;
        for (node, (input, [h, w, c]), residual, (output, [oh, ow, oc])) in &targets {
            let (Some(x), Some(reference)) = (seen.get(input), seen.get(output)) else {
                continue;
            };
            let transposed;
            let x = if graph_inputs.contains(input) {
                transposed = nchw_to_nhwc(x, *c, *h, *w);
                &transposed
            } else {
                x
            };
            let conv = convs[node.as_str()];
            let mut y = vec![0f32; reference.len()];
            let mut scratch = vec![0u8; conv.scratch_len(threads.max(1)).unwrap_or(0)];
            let kernel = |e: tao_kernels::KernelError| kernel_error(node, "Conv", e);
            let residual = match residual.as_ref().and_then(|r| seen.get(r)) {
                Some(r) => Residual::Tensor(Nhwc::new(r, [1, *oh, *ow, *oc]).map_err(kernel)?),
                None => Residual::None,
            };
            conv.execute(
                &ctx,
                QInput::F32(Nhwc::new(x, [1, *h, *w, *c]).map_err(kernel)?),
                QOutput::F32(NhwcMut::new(&mut y, [1, *oh, *ow, *oc]).map_err(kernel)?),
                residual,
                &mut scratch,
            )
            .map_err(kernel)?;
            let entry = sums.entry(node.clone()).or_insert((0.0, 0.0, 0.0));
            for (a, b) in y.iter().zip(reference) {
                let d = a - b;
                entry.0 += (d as f64) * (d as f64);
                entry.1 += (*b as f64) * (*b as f64);
                entry.2 = entry.2.max(d.abs());
            }
        }
    }
    Ok(targets
        .iter()
        .filter_map(|(node, ..)| {
            let (diff, reference, max_abs) = sums.get(node)?;
            Some(LayerError {
                node: node.clone(),
                relative_rms: (diff / reference.max(f64::MIN_POSITIVE)).sqrt() as f32,
                max_abs: *max_abs,
            })
        })
        .collect())
}

fn nchw_to_nhwc(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0f32; c * h * w];
    for ch in 0..c {
        for (p, &v) in x[ch * h * w..(ch + 1) * h * w].iter().enumerate() {
            out[p * c + ch] = v;
        }
    }
    out
}
