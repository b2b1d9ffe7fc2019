//! Choosing the backend an engine is built with.
//!
//! The CLI tools (`--backend`) and the GStreamer element (`backend`) share one rule: `cpu` and
//! `cuda` are taken as asked (and fail with the reason when they cannot be had), `auto` takes the
//! CUDA backend when a usable GPU is present and the precision runs there, and the CPU backend
//! otherwise — always with a note saying what it chose and why.

use std::fmt;
use std::str::FromStr;

use tao_backend_cuda::CudaBackend;
use tao_engine::backend::{Backend, Precision};
use tao_engine::calibration::CalibrationCache;
use tao_engine::cpu::CpuBackend;
use tao_engine::cpu::int8::CpuInt8Backend;

/// The user's choice of backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// The fastest backend this machine has for the requested precision.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl BackendChoice {
    pub const NAMES: &'static str = "auto, cpu or cuda";

    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Cuda => "cuda",
        }
    }
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<BackendChoice, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "cuda" | "gpu" => Ok(BackendChoice::Cuda),
            _ => Err(format!(
                "unknown backend `{text}` (expected {})",
                BackendChoice::NAMES
            )),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an engine is wanted for.
#[derive(Clone, Debug)]
pub struct Request {
    pub choice: BackendChoice,
    /// The GPU to use (CUDA ordinal); ignored by the CPU backend.
    pub device_id: usize,
    pub precision: Precision,
    /// Required for INT8: the per-tensor scales the engine quantises with.
    pub calibration: Option<CalibrationCache>,
}

/// The backend chosen for a [`Request`].
pub struct Chosen {
    pub backend: Box<dyn Backend + Send + Sync>,
    /// What `auto` decided and why (none when the user named the backend and got it).
    pub note: Option<String>,
}

impl fmt::Debug for Chosen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chosen")
            .field("backend", &self.backend.name())
            .field("note", &self.note)
            .finish()
    }
}

/// Whether the CUDA backend builds engines of this precision.
pub fn cuda_supports(precision: Precision) -> bool {
    tao_backend_cuda::dtype_for(precision).is_ok()
}

/// Picks the backend for `request`, or says why the one asked for cannot be used.
pub fn choose(request: &Request) -> Result<Chosen, String> {
    let precision = request.precision.name();
    match request.choice {
        BackendChoice::Cpu => Ok(Chosen {
            backend: cpu_backend(request)?,
            note: None,
        }),
        BackendChoice::Cuda => {
            let gpu = CudaBackend::probe_device(request.device_id).map_err(|e| {
                format!(
                    "the CUDA backend is not available on device {}: no GPU: {e}",
                    request.device_id
                )
            })?;
            if !cuda_supports(request.precision) {
                return Err(format!(
                    "the CUDA backend does not build {precision} engines yet (use precision fp16 or fp32, or the CPU backend)"
                ));
            }
            Ok(Chosen {
                backend: Box::new(gpu),
                note: None,
            })
        }
        BackendChoice::Auto => match CudaBackend::probe_device(request.device_id) {
            Ok(gpu) if cuda_supports(request.precision) => {
                let note = format!(
                    "auto: using the CUDA backend on device {} ({})",
                    request.device_id,
                    gpu.info().name
                );
                Ok(Chosen {
                    backend: Box::new(gpu),
                    note: Some(note),
                })
            }
            Ok(_) => Ok(Chosen {
                backend: cpu_backend(request)?,
                note: Some(format!(
                    "auto: the CUDA backend does not build {precision} engines yet; using the CPU backend"
                )),
            }),
            Err(e) => Ok(Chosen {
                backend: cpu_backend(request)?,
                note: Some(format!("auto: no GPU ({e}); using the CPU backend")),
            }),
        },
    }
}

fn cpu_backend(request: &Request) -> Result<Box<dyn Backend + Send + Sync>, String> {
    match (request.precision, &request.calibration) {
        (Precision::Int8, Some(table)) => Ok(Box::new(CpuInt8Backend::new(table.clone()))),
        (Precision::Int8, None) => {
            Err("an INT8 engine needs a calibration cache (give one, or build fp32 or fp16)".into())
        }
        _ => Ok(Box::new(CpuBackend)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(choice: BackendChoice, precision: Precision) -> Request {
        Request {
            choice,
            device_id: 0,
            precision,
            calibration: None,
        }
    }

    #[test]
    fn parses_every_name_and_rejects_others() {
        for choice in [BackendChoice::Auto, BackendChoice::Cpu, BackendChoice::Cuda] {
            assert_eq!(choice.name().parse::<BackendChoice>(), Ok(choice));
            assert_eq!(choice.to_string().to_uppercase().parse(), Ok(choice));
        }
        let err = "tensorrt".parse::<BackendChoice>().unwrap_err();
        assert!(
            err.contains("tensorrt") && err.contains("auto, cpu or cuda"),
            "{err}"
        );
    }

    #[test]
    fn cpu_is_taken_as_asked() {
        let chosen = choose(&request(BackendChoice::Cpu, Precision::Fp32)).unwrap();
        assert_eq!(chosen.backend.name(), "cpu");
        assert!(chosen.note.is_none());
    }

    #[test]
    fn int8_on_the_cpu_needs_a_table() {
        let err = choose(&request(BackendChoice::Cpu, Precision::Int8)).unwrap_err();
        assert!(err.contains("calibration cache"), "{err}");
        let mut with_table = request(BackendChoice::Cpu, Precision::Int8);
        with_table.calibration =
            Some(CalibrationCache::parse("TRT-8601-EntropyCalibration2\nx: 3c000000\n").unwrap());
        let chosen = choose(&with_table).unwrap();
        assert_eq!(chosen.backend.name(), "cpu");
        assert!(chosen.backend.device().contains("int8 calibration"));
    }

    /// Holds on every machine: with a GPU `auto` names it, without one it says why not.
    #[test]
    fn auto_explains_its_choice() {
        let chosen = choose(&request(BackendChoice::Auto, Precision::Fp32)).unwrap();
        let note = chosen.note.clone().unwrap();
        match CudaBackend::probe() {
            Ok(_) => {
                assert_eq!(chosen.backend.name(), "cuda");
                assert!(note.contains("CUDA backend"), "{note}");
            }
            Err(e) => {
                assert_eq!(chosen.backend.name(), "cpu");
                assert!(note.contains("no GPU") && note.contains(&e.0), "{note}");
                let err = choose(&request(BackendChoice::Cuda, Precision::Fp32)).unwrap_err();
                assert!(err.contains("no GPU") && err.contains("device 0"), "{err}");
            }
        }
    }
}
