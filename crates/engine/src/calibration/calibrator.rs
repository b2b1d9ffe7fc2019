//! Collecting activation statistics from the FP32 engine and turning them into a calibration table.

use std::collections::BTreeMap;

use super::cache::{Algorithm, CalibrationCache, DEFAULT_VERSION};
use super::histogram::Histogram;
use crate::backend::{Engine, EngineResult};
use crate::cpu::CpuEngine;

/// How amax is chosen from a tensor's histogram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// KL divergence (TensorRT's EntropyCalibration2), the default.
    Entropy,
    MinMax,
    /// amax at this fraction of |x| (e.g. 0.9999).
    Percentile(f64),
}

impl Method {
    pub fn algorithm(self) -> Algorithm {
        match self {
            Method::Entropy => Algorithm::Entropy2,
            Method::MinMax => Algorithm::MinMax,
            Method::Percentile(_) => Algorithm::Percentile,
        }
    }
}

/// Per-tensor histograms over every batch fed so far.
#[derive(Default)]
pub struct Calibrator {
    histograms: BTreeMap<String, Histogram>,
    order: Vec<String>,
    images: usize,
}

impl Calibrator {
    pub fn new() -> Calibrator {
        Calibrator::default()
    }

    /// Runs one batch (NCHW inputs, as for inference) through the engine and records every tensor.
    pub fn feed(
        &mut self,
        engine: &mut CpuEngine,
        batch: usize,
        inputs: &[&[f32]],
    ) -> EngineResult<()> {
        let mut outputs: Vec<Vec<f32>> = engine
            .outputs()
            .iter()
            .map(|d| vec![0.0; d.elements_per_image() * batch])
            .collect();
        let mut views: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        let (histograms, order) = (&mut self.histograms, &mut self.order);
        engine.run_observed(batch, inputs, &mut views, &mut |name, data| {
            let h = histograms.entry(name.to_owned()).or_insert_with(|| {
                order.push(name.to_owned());
                Histogram::default()
            });
            h.add(data);
        })?;
        self.images += batch;
        Ok(())
    }

    pub fn images(&self) -> usize {
        self.images
    }

    pub fn histogram(&self, tensor: &str) -> Option<&Histogram> {
        self.histograms.get(tensor)
    }

    /// The table: scale = amax / 127 per tensor, in execution order.
    pub fn finish(&self, method: Method) -> CalibrationCache {
        let scales = self
            .order
            .iter()
            .map(|name| {
                let h = &self.histograms[name];
                let amax = match method {
                    Method::Entropy => h.amax_entropy(),
                    Method::MinMax => h.amax_minmax(),
                    Method::Percentile(p) => h.amax_percentile(p),
                };
                (name.clone(), amax / 127.0)
            })
            .collect();
        CalibrationCache {
            version: DEFAULT_VERSION.to_owned(),
            algorithm: method.algorithm(),
            scales,
        }
    }
}
