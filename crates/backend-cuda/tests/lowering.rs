//! The GPU program, run on the CPU by the emulator, agrees with the reference executor on the real
//! models and on small graphs that exercise every lowering path; the program survives its binary
//! encoding; unsupported ops fail the build with the node named.

mod common;

use tao_backend_cuda::program::{DType, Program, Step};
use tao_backend_cuda::{codec, emulate, lower};
use tao_graph::ir::{Graph, Tensor};
use tao_graph::reference;

/// Lowers `graph` (optimised first), runs the emulator at `batch` and 1, compares with the
/// reference; returns the worst relative error over outputs.
fn check(original: &Graph, dtype: DType, batch: usize, tol: f64) -> (Program, f64) {
    let mut graph = original.clone();
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let program = lower::lower(&graph, dtype, batch).unwrap();
    codec::validate(&program).unwrap();
    let encoded = codec::encode(&program);
    let decoded = codec::decode(&encoded, program.weights.clone()).unwrap();
    assert_eq!(decoded, program, "binary encoding round trip");

    let inputs: Vec<Tensor> = program
        .inputs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut shape = vec![batch];
            shape.extend_from_slice(&d.shape);
            common::random_input(&shape, 7 + i as u64)
        })
        .collect();
    let named: Vec<(&str, Tensor)> = program
        .inputs
        .iter()
        .zip(&inputs)
        .map(|(d, t)| (d.name.as_str(), t.clone()))
        .collect();
    let want = reference::run(original, &named).unwrap();
    let mut worst = 0f64;
    let batches = if batch == 1 { vec![1] } else { vec![batch, 1] };
    for b in batches {
        let views: Vec<Vec<f32>> = inputs
            .iter()
            .zip(&program.inputs)
            .map(|(t, d)| t.as_f32().unwrap()[..d.elements_per_image() * b].to_vec())
            .collect();
        let refs: Vec<&[f32]> = views.iter().map(Vec::as_slice).collect();
        let got = emulate::run(&program, b, &refs).unwrap();
        for ((name, w), g) in want.iter().zip(&got) {
            let w = w.as_f32().unwrap();
            let per = w.len() / batch;
            assert!(g.iter().all(|v| v.is_finite()), "{name}: non-finite output");
            let err = common::relative_error(g, &w[..per * b]);
            println!(
                "{} batch {b} {name}: relative error {err:.2e}",
                dtype.name()
            );
            assert!(
                err <= tol,
                "{} batch {b} {name}: {err:e} > {tol:e}",
                dtype.name()
            );
            worst = worst.max(err);
        }
    }
    (program, worst)
}

#[test]
fn fpenet_program_matches_reference() {
    let Some(g) = common::fpenet("fpenet_program_matches_reference") else {
        return;
    };
    let (program, _) = check(&g, DType::F32, 2, 1e-4);
    let listing = program.listing();
    println!("{}", listing.join("\n"));
    let convs = listing.iter().filter(|s| s.starts_with("conv ")).count();
    let transposed = listing
        .iter()
        .filter(|s| s.starts_with("conv-transpose"))
        .count();
    assert_eq!((convs, transposed), (16, 4));
    // Every ReLU is fused into its convolution.
    assert!(
        !listing.iter().any(|s| s.starts_with("unary1 ")),
        "an unfused ReLU"
    );
    check(&g, DType::F16, 2, 3e-2);
}

#[test]
fn lpdnet_program_matches_reference() {
    let Some(g) = common::lpdnet("lpdnet_program_matches_reference") else {
        return;
    };
    let (program, _) = check(&g, DType::F32, 1, 1e-4);
    let listing = program.listing();
    println!("{}", listing.join("\n"));
    let convs: Vec<&String> = listing.iter().filter(|s| s.starts_with("conv ")).collect();
    assert_eq!(convs.len(), 23);
    // ReLU6, the residual adds and the sigmoid ride on the convolutions: 23 convs, the input
    // conversion, the two outputs, and a gather before each strided 1×1 shortcut.
    let gathers = listing
        .iter()
        .filter(|s| s.contains("/subsample-for/"))
        .count();
    assert!(gathers >= 3, "{listing:#?}");
    assert_eq!(program.steps.len(), 23 + 1 + 2 + gathers, "{listing:#?}");
    check(&g, DType::F16, 1, 3e-2);
}

#[test]
fn detectnet_resnet18_program_matches_reference() {
    let Some(g) = common::detectnet("detectnet_resnet18_program", "resnet18", 96, 160) else {
        return;
    };
    let (program, _) = check(&g, DType::F32, 2, 1e-4);
    let listing = program.listing();
    let convs = program
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Conv { .. }))
        .count();
    // conv1, two per basic block, four projection shortcuts, two heads.
    assert_eq!(convs, 1 + 8 * 2 + 4 + 2, "{listing:#?}");
    assert!(
        listing[0].starts_with("cast-in-space-to-depth"),
        "conv1 (7×7/2 on 3 channels) runs as 4×4/1 on a space-to-depth input: {listing:#?}"
    );
    let residuals = listing.iter().filter(|s| s.contains("+residual")).count();
    assert_eq!(
        residuals, 8,
        "each basic block's add is fused: {listing:#?}"
    );
    let (_, fp16) = check(&g, DType::F16, 2, 5e-2);
    println!("DetectNet_v2-ResNet18 FP16 emulation: worst relative error {fp16:.2e}");
}
