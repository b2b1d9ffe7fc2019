//! LPDNet in INT8 with NVIDIA's own calibration table (`usa_lpd_cal.bin`) on the shared car
//! photos, against the FP32 engine: coverage maps, detections above 0.5 coverage, box IoU.

mod common;
mod int8_support;

use int8_support::{build_and_load, decode, engines, iou, run};
use tao_engine::backend::Precision;
use tao_engine::calibration::CalibrationCache;
use tao_engine::cpu::int8::CpuInt8Backend;

/// 640×480 input, stride-16 grid.
const GRID: [usize; 2] = [30, 40];

fn lpdnet_and_cache(
    test: &str,
) -> Option<(tao_graph::ir::Graph, CalibrationCache, std::path::PathBuf)> {
    let shared = common::shared_dir(test)?;
    let mut graph = common::lpdnet(test)?;
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let text = std::fs::read_to_string(
        shared.join("fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_lpd_cal.bin"),
    )
    .unwrap();
    Some((graph, CalibrationCache::parse(&text).unwrap(), shared))
}

#[test]
fn lpdnet_int8_keeps_the_detections_of_fp32() {
    let Some((graph, cache, shared)) = lpdnet_and_cache("lpdnet_int8_keeps_the_detections_of_fp32")
    else {
        return;
    };
    let (mut fp32, mut int8, decisions) = engines(&graph, &cache, 1);
    let int8_layers: Vec<&str> = decisions
        .iter()
        .filter(|c| c.precision == Precision::Int8)
        .map(|c| c.node.as_str())
        .collect();
    for c in &decisions {
        println!("{:<45} {:<5} {}", c.node, c.precision.name(), c.reason);
    }
    // 23 convolutions: every one with a calibrated input runs INT8 except the two output heads.
    assert_eq!(decisions.len(), 23);
    assert_eq!(int8_layers.len(), 21, "{int8_layers:?}");

    let photos = common::car_photos(&shared);
    assert!(photos.len() >= 10);
    let (mut worst_cov, mut worst_iou, mut total) = (0f32, 1f32, 0);
    let mut changed = Vec::new();
    for photo in &photos {
        // lpd_us_config.txt: BGR (model-color-format=1), net-scale-factor 1/255, 640x480.
        let input = common::photo_input(photo, 640, 480, true, 1.0 / 255.0);
        let (a, b) = (run(fp32.as_mut(), 1, &input), run(int8.as_mut(), 1, &input));
        // Outputs: output_cov/Sigmoid [1,30,40], output_bbox/BiasAdd [4,30,40].
        let cov_diff = a[0]
            .iter()
            .zip(&b[0])
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let bbox_diff = a[1]
            .iter()
            .zip(&b[1])
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let da = decode(&a[0], &a[1], GRID, 16.0, 35.0, 0.5);
        let db = decode(&b[0], &b[1], GRID, 16.0, 35.0, 0.5);
        let mut photo_iou = 1f32;
        let name = photo.file_name().unwrap().to_string_lossy().into_owned();
        for d in &da {
            match db.iter().find(|e| e.cell == d.cell) {
                Some(e) => photo_iou = photo_iou.min(iou(d.bbox, e.bbox)),
                None => changed.push((name.clone(), d.cell, d.coverage, b[0][d.cell])),
            }
        }
        for e in &db {
            if !da.iter().any(|d| d.cell == e.cell) {
                changed.push((name.clone(), e.cell, a[0][e.cell], e.coverage));
            }
        }
        println!(
            "{:<45} detections fp32 {:>2} int8 {:>2}  max |Δcov| {cov_diff:.4}  max |Δbbox| {bbox_diff:.4}  min IoU {photo_iou:.3}",
            photo.file_name().unwrap().to_string_lossy(),
            da.len(),
            db.len()
        );
        worst_cov = worst_cov.max(cov_diff);
        worst_iou = worst_iou.min(photo_iou);
        total += da.len();
    }
    println!(
        "{} photos, {total} FP32 detections above 0.5: worst coverage difference {worst_cov:.4}, \
         worst IoU of matched boxes {worst_iou:.3}",
        photos.len()
    );
    for (photo, cell, fp32_cov, int8_cov) in &changed {
        println!(
            "  crossed the 0.5 threshold: {photo} cell {cell}: fp32 {fp32_cov:.4} int8 {int8_cov:.4}"
        );
    }
    assert!(
        total >= 20,
        "the photos must produce detections to compare ({total})"
    );
    // What this reaches with NVIDIA's table: every box matched with IoU >= 0.9; the only change
    // allowed is a cell sitting within 0.02 of the threshold in FP32 crossing it (one such cell,
    // 0.507 in FP32, does on these photos).
    assert!(worst_iou >= 0.9, "worst IoU {worst_iou}");
    assert!(worst_cov < 0.1, "worst coverage difference {worst_cov}");
    assert!(changed.len() <= 1, "{changed:?}");
    assert!(
        changed
            .iter()
            .all(|(_, _, fp32_cov, _)| (fp32_cov - 0.5).abs() < 0.02),
        "a detection away from the threshold changed: {changed:?}"
    );
}

/// The INT8 engine gives each image the same answer at batch 1 and in a batch of 3, bit for bit
/// (quantization is per element and the kernels split work without changing any sum).
#[test]
fn lpdnet_int8_batches_match_single_images() {
    let Some((graph, cache, shared)) = lpdnet_and_cache("lpdnet_int8_batches_match_single_images")
    else {
        return;
    };
    let (_, mut int8, _) = engines(&graph, &cache, 3);
    let photos = common::car_photos(&shared);
    let inputs: Vec<Vec<f32>> = photos[..3]
        .iter()
        .map(|p| common::photo_input(p, 640, 480, true, 1.0 / 255.0))
        .collect();
    let batch: Vec<f32> = inputs.concat();
    let together = run(int8.as_mut(), 3, &batch);
    for (i, input) in inputs.iter().enumerate() {
        let alone = run(int8.as_mut(), 1, input);
        for (o, out) in alone.iter().enumerate() {
            let n = out.len();
            assert_eq!(
                out[..],
                together[o][i * n..(i + 1) * n],
                "image {i} output {o}"
            );
        }
    }
}

/// The program listing says which convolutions run in INT8, and the plan's decisions agree.
#[test]
fn lpdnet_listing_names_each_convolutions_precision() {
    let Some((graph, cache, _)) =
        lpdnet_and_cache("lpdnet_listing_names_each_convolutions_precision")
    else {
        return;
    };
    let backend = CpuInt8Backend::new(cache);
    let (program, choices) = backend.lower(&graph).unwrap();
    let listing: Vec<String> = program
        .steps
        .iter()
        .map(|s| s.describe(&program.values))
        .collect();
    println!("{}", listing.join("\n"));
    let int8 = listing
        .iter()
        .filter(|s| s.starts_with("conv[int8"))
        .count();
    let fp32 = listing
        .iter()
        .filter(|s| s.starts_with("conv[fp32"))
        .count();
    assert_eq!((int8, fp32), (21, 2));
    // Activations stay s8 between INT8 convolutions wherever every reader is one (a value also
    // read as a residual stays f32): 12 such edges in LPDNet, and each s8 input comes from one.
    let s8_out = listing.iter().filter(|s| s.contains("s8 out]")).count();
    assert_eq!(s8_out, 12);
    let s8_values: Vec<&str> = program
        .values
        .iter()
        .filter(|v| v.s8_scale.is_some())
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(s8_values.len(), 12);
    for line in listing.iter().filter(|s| s.contains(", s8 in")) {
        assert!(line.starts_with("conv[int8"), "{line}");
    }
    for c in &choices {
        let line = listing
            .iter()
            .find(|l| l.contains(&format!(" {} ", c.node)))
            .unwrap_or_else(|| panic!("{} not listed", c.node));
        let tag = format!("conv[{}", c.precision.name());
        assert!(line.starts_with(&tag), "{line} vs {c:?}");
    }
    assert!(
        choices
            .iter()
            .filter(|c| c.precision == Precision::Fp32)
            .all(|c| c.reason.contains("output head")),
        "{choices:?}"
    );
}

/// Handing s8 activations from one INT8 convolution to the next (requantised in the producer's
/// epilogue) gives the results of passing them as f32 and quantising in the reader, through plans
/// (the choice is recorded in the plan), at batch 1 and 2.
#[test]
fn lpdnet_s8_activations_match_f32_activations() {
    let test = "lpdnet_s8_activations_match_f32_activations";
    let Some((graph, cache, shared)) = lpdnet_and_cache(test) else {
        return;
    };
    let s8 = CpuInt8Backend::new(cache.clone());
    let mut f32_only = CpuInt8Backend::new(cache);
    f32_only.policy.s8_activations = false;
    let (mut a, _) = build_and_load(&s8, &graph, Precision::Int8, 2, 2);
    let (mut b, _) = build_and_load(&f32_only, &graph, Precision::Int8, 2, 2);
    // The engines differ: only one keeps s8 activations (so the memory they need differs too).
    let (program_a, _) = s8.lower(&graph).unwrap();
    let (program_b, _) = f32_only.lower(&graph).unwrap();
    let s8_values =
        |p: &tao_engine::cpu::Program| p.values.iter().filter(|v| v.s8_scale.is_some()).count();
    assert_eq!((s8_values(&program_a), s8_values(&program_b)), (12, 0));
    assert!(program_a.arena_per_image < program_b.arena_per_image);
    let photos = common::car_photos(&shared);
    let mut input = common::photo_input(&photos[0], 640, 480, true, 1.0 / 255.0);
    input.extend(common::photo_input(&photos[1], 640, 480, true, 1.0 / 255.0));
    for (batch, x) in [(1, &input[..input.len() / 2]), (2, &input[..])] {
        let (ya, yb) = (run(a.as_mut(), batch, x), run(b.as_mut(), batch, x));
        for (o, (p, q)) in ya.iter().zip(&yb).enumerate() {
            let scale = q.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let diff = p.iter().zip(q).fold(0f32, |m, (u, v)| m.max((u - v).abs()));
            println!("batch {batch} output {o}: max |s8 - f32| {diff:e} (scale {scale})");
            assert!(diff <= 1e-6 * scale, "batch {batch} output {o}: {diff:e}");
        }
    }
}
