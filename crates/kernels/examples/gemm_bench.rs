//! GEMM throughput of the packed micro-kernels: `C (m × n) = A (m × k) · B (k × n)`.
//!
//! ```text
//! cargo run --release -p tao-kernels --example gemm_bench -- [--threads 1] [--isa avx512|avx2|scalar] [M K N ...]
//! ```
//! Without sizes it runs shapes typical of the convolutions (Winograd GEMMs, 1×1 layers, a fully
//! connected layer). Prints the median time and GFLOP/s of each.

use std::time::Instant;
use tao_kernels::{BLayout, Context, GemmEpilogue, Isa, MatMut, MatRef, gemm, pack_b};

/// Nanoseconds of CPU time used so far by all threads of this process (Linux).
fn cpu_ns() -> u64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID is 2 on Linux.
    if unsafe { clock_gettime(2, &mut t) } != 0 {
        return 0;
    }
    t.sec as u64 * 1_000_000_000 + t.nsec as u64
}

fn main() {
    let mut threads = 1;
    let mut isa = None;
    let mut sizes = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = args.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            "--isa" => {
                isa = match args.next().as_deref() {
                    Some("avx512") => Some(Isa::Avx512),
                    Some("avx2") => Some(Isa::Avx2Fma),
                    Some("scalar") => Some(Isa::Scalar),
                    _ => None,
                }
            }
            other => match other.parse::<usize>() {
                Ok(v) => sizes.push(v),
                Err(_) => {
                    eprintln!("gemm_bench: unknown argument {other}");
                    std::process::exit(2);
                }
            },
        }
    }
    if sizes.is_empty() {
        sizes = vec![
            36, 64, 64, 36, 512, 512, 240, 512, 512, 2040, 64, 64, 2040, 256, 512, 1, 4096, 1000,
        ];
    }
    let ctx = match Context::new(threads).and_then(|c| match isa {
        Some(i) => c.with_isa(i),
        None => Ok(c),
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gemm_bench: {e}");
            std::process::exit(1);
        }
    };
    println!("threads {} isa {}", ctx.threads(), ctx.isa().name());
    for mkn in sizes.chunks_exact(3) {
        let (m, k, n) = (mkn[0], mkn[1], mkn[2]);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let Ok(packed) = pack_b(&b, k, n, BLayout::RowMajor) else {
            continue;
        };
        let mut c = vec![0f32; m * n];
        let flop = 2.0 * (m * k * n) as f64;
        let reps = ((2e9 / flop) as usize).clamp(3, 2000);
        let mut times = Vec::new();
        let mut cpu_times: Vec<f64> = Vec::new();
        for _ in 0..7 {
            let t0 = Instant::now();
            let c0 = cpu_ns();
            for _ in 0..reps {
                let a = MatRef {
                    data: &a,
                    rows: m,
                    cols: k,
                    row_stride: k,
                };
                let c = MatMut {
                    data: &mut c,
                    rows: m,
                    cols: n,
                    row_stride: n,
                };
                if let Err(e) = gemm(&ctx, a, packed.as_ref(), c, &GemmEpilogue::default()) {
                    eprintln!("gemm_bench: {e}");
                    std::process::exit(1);
                }
            }
            times.push(t0.elapsed().as_secs_f64() / reps as f64);
            cpu_times.push((cpu_ns() - c0) as f64 * 1e-9 / reps as f64 / ctx.threads() as f64);
        }
        times.sort_by(|x, y| x.total_cmp(y));
        cpu_times.sort_by(|x, y| x.total_cmp(y));
        let (t, tc) = (times[times.len() / 2], cpu_times[cpu_times.len() / 2]);
        println!(
            "m {m:5} k {k:5} n {n:5}: wall {:9.1} us {:7.1} GFLOP/s | cpu/thread {:9.1} us {:7.1} GFLOP/s",
            t * 1e6,
            flop / t / 1e9,
            tc * 1e6,
            flop / tc / 1e9
        );
    }
}
