//! FPENet (facial landmarks) in INT8 with NVIDIA's calibration table (`fpenet_cal.txt`) on the
//! annotated faces of the shared photos, against the FP32 engine: landmark shift in pixels.

mod common;
mod int8_support;

use int8_support::{engines, face_boxes, gray_crop, run};
use tao_engine::backend::Precision;
use tao_engine::calibration::CalibrationCache;

#[test]
fn fpenet_int8_landmarks_stay_within_a_pixel_of_fp32() {
    let test = "fpenet_int8_landmarks_stay_within_a_pixel_of_fp32";
    let Some(shared) = common::shared_dir(test) else {
        return;
    };
    let mut graph = common::fpenet(test).unwrap();
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let text = std::fs::read_to_string(
        shared.join("fixtures/real-etlt/fpenet_deployable_v3.0/fpenet_cal.txt"),
    )
    .unwrap();
    let cache = CalibrationCache::parse(&text).unwrap();
    let (mut fp32, mut int8, decisions) = engines(&graph, &cache, 1);
    for c in &decisions {
        println!("{:<28} {:<5} {}", c.node, c.precision.name(), c.reason);
    }
    let int8_layers = decisions
        .iter()
        .filter(|c| c.precision == Precision::Int8)
        .count();
    // 16 convolutions; the keypoint head (a network output) stays FP32.
    assert_eq!(decisions.len(), 16);
    assert_eq!(int8_layers, 15);
    let outputs: Vec<(String, Vec<usize>)> = fp32
        .outputs()
        .iter()
        .map(|o| (o.name.clone(), o.shape.clone()))
        .collect();
    println!("outputs: {outputs:?}");
    // softargmax: [80, 2] landmark (x, y) in input pixels; softargmax:1: [80] confidence.
    assert_eq!(outputs[0], ("softargmax".to_owned(), vec![80, 2]));

    let dir = shared.join("fixtures/media/images/faces");
    let faces = face_boxes(&dir);
    assert!(faces.len() >= 30, "{} faces", faces.len());
    let (mut sum, mut count, mut worst, mut worst_mean) = (0f64, 0usize, 0f32, 0f32);
    let mut confidence_diff = 0f32;
    for face in &faces {
        // sample_faciallandmarks_config: gray (model-color-format=2), net-scale-factor 1, 80x80.
        let input = gray_crop(&dir.join(&face.file), face.rect, 80);
        let (a, b) = (run(fp32.as_mut(), 1, &input), run(int8.as_mut(), 1, &input));
        let mut face_sum = 0f32;
        for (pa, pb) in a[0].chunks(2).zip(b[0].chunks(2)) {
            // Landmarks lie on the 80x80 crop.
            assert!(
                (-1.0..=81.0).contains(&pa[0]) && (-1.0..=81.0).contains(&pa[1]),
                "{pa:?}"
            );
            let d = ((pa[0] - pb[0]).powi(2) + (pa[1] - pb[1]).powi(2)).sqrt();
            face_sum += d;
            worst = worst.max(d);
            count += 1;
        }
        sum += face_sum as f64;
        worst_mean = worst_mean.max(face_sum / 80.0);
        confidence_diff = a[1]
            .iter()
            .zip(&b[1])
            .fold(confidence_diff, |m, (x, y)| m.max((x - y).abs()));
    }
    let mean = (sum / count as f64) as f32;
    println!(
        "{} faces x 80 landmarks: mean shift {mean:.3} px, worst face mean {worst_mean:.3} px, \
         worst landmark {worst:.3} px, max confidence difference {confidence_diff:.4}",
        faces.len()
    );
    assert!(mean < 1.0, "mean landmark shift {mean} px");
}
