//! The CUDA backend: engines built for the local NVIDIA GPU.
//!
//! A build lowers the optimised graph into a [`program::Program`] — cuDNN convolutions over NHWC
//! activations with bias, activation and residual fused (a stride-2 stem on few channels as a
//! stride-1 convolution on a space-to-depth input), cuBLASLt matmuls with bias/ReLU epilogues for
//! fully connected layers, NVRTC-compiled kernels for everything else — times the candidate cuDNN algorithms of every convolution on this GPU and writes the
//! choices, the weights (FP32 or FP16) and the compiled kernels into the plan. Loading a plan only
//! uploads and executes: one arena, pinned host buffers, asynchronous copies on one stream, and a
//! CUDA graph captured per batch size.
//!
//! After a run, [`CudaEngine::decode_detectnet`] decodes a DetectNet_v2 grid on the GPU and returns
//! only the candidate boxes; [`int8_probe`] measures whether cuDNN's INT8 convolutions would pay.
//!
//! CUDA, NVRTC and cuDNN are loaded when first needed, so the crate builds and runs on machines
//! without them; [`CudaBackend::probe`] then says "no GPU: …".

pub mod codec;
pub mod cublaslt;
pub mod cudnn;
pub mod detectnet;
pub mod emulate;
pub mod engine;
pub mod exec;
pub mod gpu;
pub mod int8_probe;
pub mod lower;
pub mod program;

use std::sync::Arc;
use std::time::Instant;

use tao_engine::backend::{Backend, BuildConfig, Engine, EngineError, EngineResult, Precision};
use tao_engine::plan::{Plan, PlanBuilder};
use tao_graph::ir::Graph;

pub use engine::CudaEngine;
pub use gpu::DeviceInfo;

use program::{DType, Program};

pub const BACKEND_NAME: &str = "cuda";
const GRAPH_SECTION: &str = "graph.onnx";
const PROGRAM_SECTION: &str = "cuda.program";
const WEIGHTS_SECTION: &str = "cuda.weights";
/// Followed by the activation type the kernels were compiled for (`cuda.cubin.fp16`).
const CUBIN_SECTION: &str = "cuda.cubin";
const CHOICES_SECTION: &str = "cuda.choices";

/// Why there is no usable GPU; displays as `"no GPU: <reason>"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoGpu(pub String);

/// The CUDA backend bound to one GPU.
pub struct CudaBackend {
    gpu: Arc<gpu::Gpu>,
    fingerprint: String,
}

impl CudaBackend {
    /// Opens GPU 0, or says why it cannot ("no GPU: …").
    pub fn probe() -> Result<CudaBackend, NoGpu> {
        Self::probe_device(0)
    }

    /// Opens GPU `ordinal` (the element's and CLI's `device-id`).
    pub fn probe_device(ordinal: usize) -> Result<CudaBackend, NoGpu> {
        let gpu = gpu::open(ordinal).map_err(NoGpu)?;
        let fingerprint = gpu.info.fingerprint();
        Ok(CudaBackend {
            gpu: Arc::new(gpu),
            fingerprint,
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.gpu.info
    }

    /// Times cuDNN's best FP16 and INT8 algorithms for each distinct convolution of `program` at
    /// `batch` images (see [`int8_probe`]).
    pub fn int8_conv_probe(&self, program: &Program, batch: usize) -> Vec<int8_probe::ProbeRow> {
        let mut convs: Vec<(program::ConvGeom, usize)> = Vec::new();
        for step in &program.steps {
            if let program::Step::Conv { geom, .. } = step {
                match convs.iter_mut().find(|(g, _)| g == geom) {
                    Some((_, n)) => *n += 1,
                    None => convs.push((*geom, 1)),
                }
            }
        }
        int8_probe::probe(&self.gpu, &convs, batch)
    }

    /// Loads a plan into the concrete engine (for timing and profiling beyond [`Engine`]).
    pub fn load_engine(&self, plan: &Plan) -> EngineResult<CudaEngine> {
        let program = codec::decode(
            plan.section(PROGRAM_SECTION)?,
            plan.section(WEIGHTS_SECTION)?.to_vec(),
        )
        .map_err(|e| EngineError::Invalid(format!("plan program: {e}")))?;
        for step in &program.steps {
            if let program::Step::Conv {
                node, choice: None, ..
            }
            | program::Step::ConvTranspose {
                node, choice: None, ..
            } = step
            {
                return Err(EngineError::Invalid(format!(
                    "plan has no algorithm for convolution `{node}`"
                )));
            }
        }
        // Kernels compiled for the program's activation type only: never read FP16 as FP32.
        let cubin = plan.section(&format!("{CUBIN_SECTION}.{}", program.dtype.name()))?;
        CudaEngine::new(self.gpu.clone(), program, cubin).map_err(EngineError::Invalid)
    }
}

/// The activation type a precision builds.
pub fn dtype_for(precision: Precision) -> EngineResult<DType> {
    match precision {
        Precision::Fp32 => Ok(DType::F32),
        Precision::Fp16 => Ok(DType::F16),
        Precision::Int8 => Err(EngineError::Invalid(
            "the CUDA backend does not build INT8 engines yet: use fp16 or fp32".into(),
        )),
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        BACKEND_NAME
    }

    fn device(&self) -> String {
        self.fingerprint.clone()
    }

    fn build(&self, graph: &Graph, config: &BuildConfig) -> EngineResult<PlanBuilder> {
        let started = Instant::now();
        let dtype = dtype_for(config.precision)?;
        let program = lower::lower(graph, dtype, config.max_batch)?;
        codec::validate(&program).map_err(|e| EngineError::Invalid(format!("lowering: {e}")))?;
        let cubin = gpu::nvrtc_compile(
            exec::KERNEL_SOURCE,
            &self.gpu.info.arch(),
            exec::kernel_defines(dtype),
        )
        .map_err(EngineError::Invalid)?;
        let compiled = started.elapsed();
        let mut resident =
            exec::Resident::new(self.gpu.clone(), program, &cubin).map_err(EngineError::Invalid)?;
        // Candidates may use up to a quarter of free memory (at most 1 GiB) as workspace.
        let free = self.gpu.ctx.mem_get_info().map(|(f, _)| f).unwrap_or(0);
        let limit = (free / 4).min(1 << 30);
        let report = exec::tune(&mut resident, limit).map_err(EngineError::Invalid)?;
        let tuned = started.elapsed();
        let program = resident.program.clone();
        drop(resident);
        let onnx = tao_graph::onnx::export(graph, &tao_graph::onnx::ExportOptions::default())?;
        let mut choices = format!(
            "precision {}\nmax-batch {}\nlower+compile {:.3}s\ntuning {:.3}s\n",
            dtype.name(),
            program.max_batch,
            compiled.as_secs_f64(),
            (tuned - compiled).as_secs_f64()
        );
        for line in &report {
            choices.push_str(line);
            choices.push('\n');
        }
        Ok(PlanBuilder::new()
            .header("cuda-precision", dtype.name())
            .section(GRAPH_SECTION, onnx)
            .section(PROGRAM_SECTION, codec::encode(&program))
            .section(WEIGHTS_SECTION, program.weights.clone())
            .section(&format!("{CUBIN_SECTION}.{}", dtype.name()), cubin)
            .section(CHOICES_SECTION, choices.into_bytes()))
    }

    fn load(&self, plan: &Plan, _threads: usize) -> EngineResult<Box<dyn Engine>> {
        Ok(Box::new(self.load_engine(plan)?))
    }
}
