//! Which integer dot-product instructions the INT8 kernels use. Detected once per
//! [`crate::QContext`]; tests force every level the CPU offers.

use tao_kernels::KernelError;

/// The instruction set an INT8 kernel call runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int8Isa {
    /// x86-64 AVX-512 (F, BW, VL) with VNNI: `vpdpbusd`, 64 u8×s8 products per instruction. Activations are fed as
    /// u8 (shifted by +128) and a per-output-channel compensation removes the shift.
    Avx512Vnni,
    /// x86-64 AVX2: `vpmaddubsw` + `vpmaddwd`. The sign of each activation is moved onto the
    /// weight (`vpsignb`) so the u8×s8 pair sums stay below the i16 saturation limit.
    Avx2,
    /// AArch64 Advanced SIMD with the dot-product extension (`sdot`, s8×s8).
    NeonDot,
    /// Portable integer code.
    Scalar,
}

impl Int8Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Int8Isa {
        Int8Isa::all_supported()
            .first()
            .copied()
            .unwrap_or(Int8Isa::Scalar)
    }

    /// Whether this CPU can run kernels compiled for `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Int8Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "aarch64")]
            Int8Isa::NeonDot => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every instruction set this CPU supports, best first.
    pub fn all_supported() -> Vec<Int8Isa> {
        [
            Int8Isa::Avx512Vnni,
            Int8Isa::Avx2,
            Int8Isa::NeonDot,
            Int8Isa::Scalar,
        ]
        .into_iter()
        .filter(|isa| isa.is_supported())
        .collect()
    }

    /// A short lower-case name (`avx512-vnni`, `avx2`, `neon-dot`, `scalar`).
    pub fn name(self) -> &'static str {
        match self {
            Int8Isa::Avx512Vnni => "avx512-vnni",
            Int8Isa::Avx2 => "avx2",
            Int8Isa::NeonDot => "neon-dot",
            Int8Isa::Scalar => "scalar",
        }
    }

    pub(crate) fn require_supported(self) -> Result<(), KernelError> {
        if self.is_supported() {
            Ok(())
        } else {
            Err(KernelError::UnsupportedIsa(self.name()))
        }
    }
}
