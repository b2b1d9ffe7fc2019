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
use tao_engine::cpu::int8::{CALIBRATION_DEVICE_MARK, CpuInt8Backend};
use tao_engine::plan::{Plan, PlanIdentity, keys};

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

/// Why there is no usable GPU, without the "no GPU: " the CUDA backend may already put in front.
fn reason(e: &tao_backend_cuda::NoGpu) -> &str {
    e.0.strip_prefix("no GPU: ").unwrap_or(&e.0)
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
                    "the CUDA backend is not available on device {}: no GPU: {}",
                    request.device_id,
                    reason(&e)
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
                note: Some(format!(
                    "auto: using the CPU backend, because there is no usable GPU (device {}): no GPU: {}",
                    request.device_id,
                    reason(&e)
                )),
            }),
        },
    }
}

/// The GPU `device_id` by name, or why there is none usable ("no GPU: <reason>" is the caller's
/// wording; this is the reason alone).
pub fn probe_gpu(device_id: usize) -> Result<String, String> {
    CudaBackend::probe_device(device_id)
        .map(|gpu| gpu.info().name.clone())
        .map_err(|e| reason(&e).to_owned())
}

/// The backend that loads `plan`: the one its header names (a CUDA plan needs the CUDA backend on
/// GPU `device_id`, a CPU plan the CPU backend). `choice` may only confirm that backend (`auto`
/// always does). The plan must have been built by this software for this device; an INT8 CPU
/// plan's device carries its calibration table's digest after the CPU's fingerprint, which is
/// accepted. Errors are one sentence, without the plan's path (the caller names the file).
pub fn for_plan(
    plan: &Plan,
    choice: BackendChoice,
    device_id: usize,
) -> Result<Box<dyn Backend + Send + Sync>, String> {
    let named = plan.header(keys::BACKEND).unwrap_or("(none)");
    let backend: Box<dyn Backend + Send + Sync> = match named {
        tao_engine::cpu::BACKEND_NAME => Box::new(CpuBackend),
        tao_backend_cuda::BACKEND_NAME => {
            Box::new(CudaBackend::probe_device(device_id).map_err(|e| {
                format!(
                    "it is a plan of the CUDA backend, which cannot run on device {device_id} here: no GPU: {}",
                    reason(&e)
                )
            })?)
        }
        other => {
            return Err(format!(
                "it is a plan of the `{other}` backend, which this software does not have"
            ));
        }
    };
    if choice != BackendChoice::Auto && choice.name() != backend.name() {
        return Err(format!(
            "it is a plan of the {} backend, not of the {choice} backend asked for (a plan runs on the backend that built it; build one for {choice} from the model)",
            backend.name()
        ));
    }
    let device = backend.device();
    let plan_device = plan.header(keys::DEVICE).unwrap_or("");
    let same_device = plan_device == device
        || (backend.name() == tao_engine::cpu::BACKEND_NAME
            && plan_device
                .strip_prefix(device.as_str())
                .is_some_and(|rest| rest.starts_with(CALIBRATION_DEVICE_MARK)));
    // The plan's own model and options: only what built it and for which device is checked.
    let identity = PlanIdentity {
        backend: backend.name().to_owned(),
        device: if same_device {
            plan_device.to_owned()
        } else {
            device
        },
        model_sha256: plan.header(keys::MODEL_SHA256).unwrap_or("").to_owned(),
        options_sha256: plan.header(keys::OPTIONS_SHA256).unwrap_or("").to_owned(),
    };
    identity.check(plan)?;
    Ok(backend)
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

    fn plan(backend: &str, device: &str) -> Plan {
        let identity = PlanIdentity {
            backend: backend.into(),
            device: device.into(),
            model_sha256: "m".into(),
            options_sha256: "o".into(),
        };
        let bytes = identity
            .stamp(tao_engine::plan::PlanBuilder::new())
            .to_bytes();
        Plan::parse(tao_engine::aligned::AlignedBytes::from_slice(&bytes)).unwrap()
    }

    #[test]
    fn a_plan_is_loaded_by_the_backend_that_built_it() {
        let cpu = CpuBackend.device();
        for device in [
            cpu.clone(),
            format!("{cpu}; int8 calibration 0123456789abcdef"),
        ] {
            let plan = plan("cpu", &device);
            for choice in [BackendChoice::Auto, BackendChoice::Cpu] {
                let backend = for_plan(&plan, choice, 0).unwrap();
                assert_eq!(backend.name(), "cpu");
            }
            let err = for_plan(&plan, BackendChoice::Cuda, 0).err().unwrap();
            assert!(
                err.contains("plan of the cpu backend, not of the cuda backend"),
                "{err}"
            );
        }
        let err = for_plan(&plan("cpu", "cpu riscv64 []"), BackendChoice::Auto, 0)
            .err()
            .unwrap();
        assert!(err.contains("built for cpu riscv64 []"), "{err}");
        let err = for_plan(
            &plan("cpu", &format!("{cpu}; other")),
            BackendChoice::Auto,
            0,
        )
        .err()
        .unwrap();
        assert!(err.contains("built for"), "{err}");
        let err = for_plan(&plan("tensorrt", "x"), BackendChoice::Auto, 0)
            .err()
            .unwrap();
        assert!(err.contains("`tensorrt` backend"), "{err}");
    }

    /// A CUDA plan needs a GPU; with one, this plan (built for a made-up GPU) is refused for its device.
    #[test]
    fn a_cuda_plan_needs_the_gpu_it_was_built_for() {
        let plan = plan("cuda", "gpu Imaginary 1.0");
        let err = for_plan(&plan, BackendChoice::Auto, 0).err().unwrap();
        match probe_gpu(0) {
            Ok(_) => assert!(err.contains("built for gpu Imaginary 1.0"), "{err}"),
            Err(reason) => {
                assert!(err.contains(&format!("no GPU: {reason}")), "{err}");
                assert!(err.contains("CUDA backend"), "{err}");
            }
        }
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
                assert!(note.contains("CPU backend"), "{note}");
                assert!(note.contains(&format!("no GPU: {}", reason(&e))), "{note}");
                assert!(!note.contains("no GPU: no GPU"), "{note}");
                let err = choose(&request(BackendChoice::Cuda, Precision::Fp32)).unwrap_err();
                assert!(err.contains("no GPU") && err.contains("device 0"), "{err}");
            }
        }
    }
}
