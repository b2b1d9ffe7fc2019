//! The CUDA engine: a resident program, pinned host buffers, and one CUDA graph per batch size
//! (host → device copies, every step, device → host copies) replayed per inference.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaGraph, sys as drv_sys};
use tao_engine::backend::{Engine, EngineError, EngineResult, IoDesc};

use crate::exec::Resident;
use crate::gpu::{Gpu, PinnedBuffer};
use crate::program::Program;

enum Graph {
    Ready(CudaGraph),
    /// Capture failed; the batch runs step by step. The reason is kept for [`CudaEngine::notes`].
    Failed(String),
}

pub struct CudaEngine {
    res: Resident,
    host_inputs: Vec<PinnedBuffer>,
    host_outputs: Vec<PinnedBuffer>,
    /// Images the pinned buffers hold; they grow on demand (page-locking is slow, and an engine
    /// that only ever runs small batches should not pay for its largest).
    pinned_batch: usize,
    graphs: HashMap<usize, Graph>,
    compute_graphs: HashMap<usize, CudaGraph>,
    inputs: Vec<IoDesc>,
    outputs: Vec<IoDesc>,
    use_graphs: bool,
}

// SAFETY: CUDA objects are not tied to a thread; every entry point binds the context first, and
// `&mut self` keeps the engine's use to one thread at a time.
unsafe impl Send for CudaEngine {}

fn invalid(e: String) -> EngineError {
    EngineError::Invalid(e)
}

impl CudaEngine {
    pub fn new(gpu: Arc<Gpu>, program: Program, cubin: &[u8]) -> Result<CudaEngine, String> {
        let inputs = program.inputs.clone();
        let outputs = program.outputs.clone();
        let res = Resident::new(gpu, program, cubin)?;
        Ok(CudaEngine {
            host_inputs: Vec::new(),
            host_outputs: Vec::new(),
            pinned_batch: 0,
            res,
            graphs: HashMap::new(),
            compute_graphs: HashMap::new(),
            inputs,
            outputs,
            use_graphs: true,
        })
    }

    /// Runs every batch step by step instead of through CUDA graphs (for comparison).
    pub fn set_use_graphs(&mut self, on: bool) {
        self.use_graphs = on;
    }

    pub fn program(&self) -> &Program {
        &self.res.program
    }

    /// One line per batch size whose graph capture failed, with the reason.
    pub fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self
            .graphs
            .iter()
            .filter_map(|(b, g)| match g {
                Graph::Failed(why) => Some(format!("batch {b}: no CUDA graph ({why})")),
                Graph::Ready(_) => None,
            })
            .collect();
        notes.sort();
        notes
    }

    /// Whether batch `batch` replays a captured graph.
    pub fn has_graph(&self, batch: usize) -> bool {
        matches!(self.graphs.get(&batch), Some(Graph::Ready(_)))
    }

    /// Milliseconds spent in each part of loading.
    pub fn load_timings(&self) -> &[(&'static str, f64)] {
        &self.res.timings
    }

    fn ensure_pinned(&mut self, batch: usize) -> Result<(), String> {
        if batch <= self.pinned_batch {
            return Ok(());
        }
        let ctx = self.res.gpu.ctx.clone();
        let pinned = |io: &[IoDesc]| {
            io.iter()
                .map(|d| PinnedBuffer::new(&ctx, d.elements_per_image() * batch))
                .collect::<Result<Vec<_>, String>>()
        };
        self.host_inputs = pinned(&self.inputs)?;
        self.host_outputs = pinned(&self.outputs)?;
        self.pinned_batch = batch;
        // Captured graphs copy from and to the old buffers.
        self.graphs.clear();
        Ok(())
    }

    fn prepare(&mut self, batch: usize) -> Result<(), String> {
        self.res
            .gpu
            .ctx
            .bind_to_thread()
            .map_err(|e| e.to_string())?;
        let before = self.res.workspace_bytes();
        self.res.prepare_batch(batch)?;
        if self.res.workspace_bytes() != before {
            // Captured graphs hold the old workspace's address.
            self.graphs.clear();
            self.compute_graphs.clear();
        }
        Ok(())
    }

    fn enqueue_all(&mut self, batch: usize) -> Result<(), String> {
        for (i, d) in self.inputs.iter().enumerate() {
            let n = d.elements_per_image() * batch;
            self.res
                .enqueue_input(i, &self.host_inputs[i].as_slice()[..n])?;
        }
        self.res.enqueue(batch)?;
        for (i, d) in self.outputs.iter().enumerate() {
            let n = d.elements_per_image() * batch;
            self.res
                .enqueue_output(i, &mut self.host_outputs[i].as_mut_slice()[..n])?;
        }
        Ok(())
    }

    fn capture(&mut self, batch: usize, with_copies: bool) -> Result<CudaGraph, String> {
        let stream = self.res.gpu.stream.clone();
        stream
            .begin_capture(drv_sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
            .map_err(|e| format!("begin capture: {e}"))?;
        let enqueued = if with_copies {
            self.enqueue_all(batch)
        } else {
            self.res.enqueue(batch)
        };
        let graph = stream.end_capture(drv_sys::CUgraphInstantiate_flags(0));
        enqueued?;
        let graph = graph
            .map_err(|e| format!("end capture: {e}"))?
            .ok_or("the capture recorded nothing")?;
        graph.upload().map_err(|e| format!("graph upload: {e}"))?;
        Ok(graph)
    }

    fn run_batch(&mut self, batch: usize) -> Result<(), String> {
        self.prepare(batch)?;
        match self.graphs.get(&batch) {
            Some(Graph::Ready(g)) if self.use_graphs => {
                g.launch().map_err(|e| format!("graph launch: {e}"))?;
                self.res.synchronize()
            }
            Some(_) => {
                self.enqueue_all(batch)?;
                self.res.synchronize()
            }
            None => {
                // First run of this batch size: step by step (loads cuDNN's kernels lazily), then
                // capture the graph later runs replay.
                self.enqueue_all(batch)?;
                self.res.synchronize()?;
                if self.use_graphs {
                    let state = match self.capture(batch, true) {
                        Ok(g) => Graph::Ready(g),
                        Err(e) => {
                            // Leave the stream clean for the step-by-step path.
                            let _ = self.res.synchronize();
                            Graph::Failed(e)
                        }
                    };
                    self.graphs.insert(batch, state);
                }
                Ok(())
            }
        }
    }

    /// Median device time of one inference of `batch` images already on the GPU (no host copies),
    /// over `iterations` replays of a captured graph (or step-by-step runs when capture fails).
    /// Milliseconds.
    pub fn device_time_ms(&mut self, batch: usize, iterations: usize) -> Result<f64, String> {
        self.check_batch(batch)?;
        self.prepare(batch)?;
        self.res.enqueue(batch)?;
        self.res.synchronize()?;
        if self.use_graphs && !self.compute_graphs.contains_key(&batch) {
            match self.capture(batch, false) {
                Ok(g) => {
                    self.compute_graphs.insert(batch, g);
                }
                Err(_) => {
                    let _ = self.res.synchronize();
                }
            }
        }
        let graph = self.compute_graphs.get(&batch).filter(|_| self.use_graphs);
        let us = self.res.time_us(iterations.max(1), 5, || match graph {
            Some(g) => g.launch().map_err(|e| format!("graph launch: {e}")),
            None => self.res.enqueue(batch),
        })?;
        Ok(us as f64 / 1000.0)
    }

    /// Device time of every step at `batch` (each run alone, median of a few), microseconds.
    pub fn profile(&mut self, batch: usize) -> Result<Vec<(String, f32)>, String> {
        self.check_batch(batch)?;
        self.prepare(batch)?;
        self.res.enqueue(batch)?;
        self.res.synchronize()?;
        let mut out = Vec::new();
        for i in 0..self.res.program.steps.len() {
            let t = self.res.time_us(3, 3, || self.res.enqueue_step(i, batch))?;
            out.push((
                self.res.program.steps[i].describe(&self.res.program.values),
                t,
            ));
        }
        Ok(out)
    }

    /// DetectNet_v2 grid decode on the GPU of the last run's outputs `coverage` and `boxes`
    /// (output indices) for its `batch` images: only the candidates come back to the host, in
    /// [`crate::detectnet::decode_cpu`]'s order, for the CPU's clustering.
    pub fn decode_detectnet(
        &mut self,
        batch: usize,
        coverage: usize,
        boxes: usize,
        params: &crate::detectnet::DecodeParams,
    ) -> Result<Vec<crate::detectnet::Candidate>, String> {
        self.check_batch(batch)?;
        self.res
            .gpu
            .ctx
            .bind_to_thread()
            .map_err(|e| e.to_string())?;
        self.res.decode_detectnet(batch, coverage, boxes, params)
    }

    fn check_batch(&self, batch: usize) -> Result<(), String> {
        if batch == 0 || batch > self.res.program.max_batch {
            return Err(format!(
                "batch {batch} is outside 1..={}",
                self.res.program.max_batch
            ));
        }
        Ok(())
    }
}

impl Engine for CudaEngine {
    fn inputs(&self) -> &[IoDesc] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoDesc] {
        &self.outputs
    }

    fn max_batch(&self) -> usize {
        self.res.program.max_batch
    }

    fn run(
        &mut self,
        batch: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> EngineResult<()> {
        self.check_batch(batch).map_err(invalid)?;
        if inputs.len() != self.inputs.len() || outputs.len() != self.outputs.len() {
            return Err(invalid(format!(
                "engine takes {} inputs and {} outputs, got {} and {}",
                self.inputs.len(),
                self.outputs.len(),
                inputs.len(),
                outputs.len()
            )));
        }
        self.res
            .gpu
            .ctx
            .bind_to_thread()
            .map_err(|e| invalid(e.to_string()))?;
        self.ensure_pinned(batch).map_err(invalid)?;
        for ((desc, data), host) in self.inputs.iter().zip(inputs).zip(&mut self.host_inputs) {
            let want = desc.elements_per_image() * batch;
            if data.len() != want {
                return Err(invalid(format!(
                    "input `{}` has {} values, {batch} images of {:?} need {want}",
                    desc.name,
                    data.len(),
                    desc.shape
                )));
            }
            host.as_mut_slice()[..want].copy_from_slice(data);
        }
        for (desc, out) in self.outputs.iter().zip(outputs.iter()) {
            let want = desc.elements_per_image() * batch;
            if out.len() != want {
                return Err(invalid(format!(
                    "output `{}` buffer has {} values, {batch} images of {:?} need {want}",
                    desc.name,
                    out.len(),
                    desc.shape
                )));
            }
        }
        self.run_batch(batch).map_err(invalid)?;
        for ((desc, out), host) in self
            .outputs
            .iter()
            .zip(outputs.iter_mut())
            .zip(&self.host_outputs)
        {
            let n = desc.elements_per_image() * batch;
            out.copy_from_slice(&host.as_slice()[..n]);
        }
        Ok(())
    }
}
