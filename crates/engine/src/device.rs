//! What a plan was built for. A plan is only trusted on a device with the same fingerprint; anything
//! else is rebuilt, with the difference said in one sentence.

/// The CPU this process runs on: architecture and the SIMD features kernels may have been chosen for.
pub fn cpu_fingerprint() -> String {
    let mut features: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if std::arch::is_x86_feature_detected!($f) {
                    features.push($f);
                }
            )*};
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avxvnni"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if std::arch::is_aarch64_feature_detected!($f) {
                    features.push($f);
                }
            )*};
        }
        probe!("neon", "fp16", "dotprod", "i8mm");
    }
    format!("cpu {} [{}]", std::env::consts::ARCH, features.join(" "))
}
