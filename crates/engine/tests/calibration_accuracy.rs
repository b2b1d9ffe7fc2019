//! INT8 accuracy with our own entropy calibration (on the shared photos) against NVIDIA's shipped
//! tables, on the same photos and with the same measures: LPDNet coverage and boxes, FPENet
//! landmarks. Ours must be at least as good.

mod common;
mod int8_support;

use int8_support::{decode, engines, face_boxes, gray_crop, iou, run};
use tao_engine::calibration::{CalibrationCache, Calibrator, Method};
use tao_engine::cpu::{CpuEngine, PrepareFresh, lower};
use tao_graph::ir::Graph;

/// Our entropy table from `inputs` fed one at a time to the FP32 engine.
fn calibrate(graph: &Graph, inputs: &[Vec<f32>]) -> CalibrationCache {
    let program = lower(graph, &mut PrepareFresh).unwrap();
    let mut engine = CpuEngine::new(program, 1, 2).unwrap();
    let mut calibrator = Calibrator::new();
    for input in inputs {
        calibrator.feed(&mut engine, 1, &[input]).unwrap();
    }
    calibrator.finish(Method::Entropy)
}

fn nvidia(shared: &std::path::Path, file: &str) -> CalibrationCache {
    CalibrationCache::parse(
        &std::fs::read_to_string(shared.join("fixtures/real-etlt").join(file)).unwrap(),
    )
    .unwrap()
}

/// LPDNet INT8 vs FP32 on `inputs`: (mean |Δcov|, worst |Δcov|, worst IoU, cells crossing 0.5).
fn lpdnet_agreement(
    graph: &Graph,
    table: &CalibrationCache,
    inputs: &[Vec<f32>],
) -> (f32, f32, f32, usize) {
    let (mut fp32, mut int8, _) = engines(graph, table, 1);
    let (mut sum, mut n, mut worst, mut worst_iou, mut crossed) = (0f64, 0usize, 0f32, 1f32, 0);
    for input in inputs {
        let (a, b) = (run(fp32.as_mut(), 1, input), run(int8.as_mut(), 1, input));
        for (x, y) in a[0].iter().zip(&b[0]) {
            sum += f64::from((x - y).abs());
            n += 1;
            worst = worst.max((x - y).abs());
        }
        let (da, db) = (
            decode(&a[0], &a[1], [30, 40], 16.0, 35.0, 0.5),
            decode(&b[0], &b[1], [30, 40], 16.0, 35.0, 0.5),
        );
        for d in &da {
            match db.iter().find(|e| e.cell == d.cell) {
                Some(e) => worst_iou = worst_iou.min(iou(d.bbox, e.bbox)),
                None => crossed += 1,
            }
        }
        crossed += db
            .iter()
            .filter(|e| !da.iter().any(|d| d.cell == e.cell))
            .count();
    }
    ((sum / n as f64) as f32, worst, worst_iou, crossed)
}

#[test]
fn lpdnet_int8_with_our_calibration_is_as_good_as_with_nvidias() {
    let test = "lpdnet_int8_with_our_calibration_is_as_good_as_with_nvidias";
    let Some(shared) = common::shared_dir(test) else {
        return;
    };
    let mut graph = common::lpdnet(test).unwrap();
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let inputs: Vec<Vec<f32>> = common::car_photos(&shared)
        .iter()
        .map(|p| common::photo_input(p, 640, 480, true, 1.0 / 255.0))
        .collect();
    let ours = calibrate(&graph, &inputs);
    let theirs = nvidia(&shared, "lpdnet_usa_pruned_v1.0/usa_lpd_cal.bin");
    let a = lpdnet_agreement(&graph, &ours, &inputs);
    let b = lpdnet_agreement(&graph, &theirs, &inputs);
    println!(
        "ours:   mean |dcov| {:.5} worst {:.4} worst IoU {:.3} crossed {}",
        a.0, a.1, a.2, a.3
    );
    println!(
        "NVIDIA: mean |dcov| {:.5} worst {:.4} worst IoU {:.3} crossed {}",
        b.0, b.1, b.2, b.3
    );
    // The INT8 targets (boxes IoU >= 0.9, no detection lost or gained), and no worse than NVIDIA's
    // table on these photos (a quarter of slack for the FP32 parts' rounding on other CPUs).
    assert!(a.2 >= 0.9, "worst IoU {}", a.2);
    assert!(
        a.3 <= b.3,
        "{} detections crossed 0.5, {} with NVIDIA's table",
        a.3,
        b.3
    );
    assert!(
        a.1 <= b.1.max(0.05) * 1.25,
        "worst coverage difference {} vs {}",
        a.1,
        b.1
    );
    assert!(
        a.0 <= b.0 * 1.25,
        "mean coverage difference {} vs {}",
        a.0,
        b.0
    );
}

#[test]
fn fpenet_int8_with_our_calibration_is_as_good_as_with_nvidias() {
    let test = "fpenet_int8_with_our_calibration_is_as_good_as_with_nvidias";
    let Some(shared) = common::shared_dir(test) else {
        return;
    };
    let mut graph = common::fpenet(test).unwrap();
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let dir = shared.join("fixtures/media/images/faces");
    let inputs: Vec<Vec<f32>> = face_boxes(&dir)
        .iter()
        .map(|f| gray_crop(&dir.join(&f.file), f.rect, 80))
        .collect();
    let ours = calibrate(&graph, &inputs);
    let theirs = nvidia(&shared, "fpenet_deployable_v3.0/fpenet_cal.txt");
    let shift = |table: &CalibrationCache| -> f32 {
        let (mut fp32, mut int8, _) = engines(&graph, table, 1);
        let (mut sum, mut n) = (0f64, 0usize);
        for input in &inputs {
            let (a, b) = (run(fp32.as_mut(), 1, input), run(int8.as_mut(), 1, input));
            for (p, q) in a[0].chunks(2).zip(b[0].chunks(2)) {
                sum += f64::from(((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt());
                n += 1;
            }
        }
        (sum / n as f64) as f32
    };
    let (a, b) = (shift(&ours), shift(&theirs));
    println!("mean landmark shift: ours {a:.4} px, NVIDIA {b:.4} px");
    assert!(a < 1.0, "mean landmark shift {a} px");
    assert!(a <= b * 1.05, "ours {a} px, NVIDIA's table {b} px");
}
