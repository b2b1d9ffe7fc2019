//! Instruction-set selection. Detection happens once per [`crate::Context`]; a test or a plan may
//! force a lower level than the CPU offers.

use crate::KernelError;

/// The vector instruction set a [`crate::Context`] runs its kernels with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// x86-64 AVX-512F (16 lanes, 32 registers).
    Avx512,
    /// x86-64 AVX2 with FMA3 (8 lanes, 16 registers).
    Avx2Fma,
    /// AArch64 Advanced SIMD (4 lanes).
    Neon,
    /// Portable code without explicit vector instructions.
    Scalar,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2Fma;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                return Isa::Neon;
            }
        }
        Isa::Scalar
    }

    /// Whether this CPU can run kernels compiled for `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every instruction set this CPU supports, best first (useful to test all paths).
    pub fn all_supported() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2Fma, Isa::Neon, Isa::Scalar]
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// A short lower-case name (`avx512`, `avx2`, `neon`, `scalar`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2Fma => "avx2",
            Isa::Neon => "neon",
            Isa::Scalar => "scalar",
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
