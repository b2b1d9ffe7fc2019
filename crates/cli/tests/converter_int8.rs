//! `tao-converter -t int8 -c <NVIDIA's cache>` on the real models, and the plans it writes run by
//! `taoctl run` on real photos against the FP32 plan of the same command line: LPDNet's coverage
//! maps and boxes, FPENet's landmarks (the agreement measures of the INT8 work).

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Converts `model` twice (fp32, and int8 with `cal`), both on the CPU backend, and checks the
/// INT8 report. `extra` are the model's own flags.
fn convert_both(d: &Path, model: &Path, cal: &Path, extra: &[&str], expect_int8: &str) {
    let model = model.to_str().unwrap();
    for (precision, engine) in [("fp32", "fp32.engine"), ("int8", "int8.engine")] {
        let mut args = vec!["--backend", "cpu", "-k", "nvidia_tlt", "-t", precision];
        args.extend(["-c", cal.to_str().unwrap(), "-e", engine]);
        args.extend_from_slice(extra);
        args.push(model);
        let out = converter(d, &args);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let text = stdout(&out);
        if precision == "int8" {
            println!("{text}");
            assert!(text.contains(expect_int8), "{text}");
            assert!(text.contains("fp32:       "), "the head stays FP32: {text}");
        } else {
            assert!(!text.contains("calibrat"), "fp32 ignores -c: {text}");
        }
    }
}

/// `taoctl run <engine>` over `photos`, each output saved; returns the values of `outputs`.
fn run_saved(
    d: &Path,
    engine: &str,
    photos: &[PathBuf],
    pre: &[&str],
    outputs: &[&str],
) -> Vec<Vec<f32>> {
    let dir = format!("npy-{engine}");
    let mut args = vec!["run", engine, "--save-npy", &dir];
    for p in photos {
        args.extend(["--input", p.to_str().unwrap()]);
    }
    args.extend_from_slice(pre);
    let out = taoctl(d, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(field(&stdout(&out), "engine:").ends_with("(plan file)"));
    outputs
        .iter()
        .map(|name| read_npy(&d.join(&dir).join(tao_cli::npy::file_name_for(name))).1)
        .collect()
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let inter = w * h;
    inter / (area(a) + area(b) - inter)
}

#[test]
fn lpdnet_int8_plan_from_nvidias_cache_keeps_the_detections() {
    let Some(shared) = shared_dir("lpdnet_int8_plan_from_nvidias_cache_keeps_the_detections")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    convert_both(
        d,
        &shared.join(LPDNET),
        &shared.join(LPDNET_CAL),
        &[
            "-d",
            "3,480,640",
            "-o",
            "output_cov/Sigmoid,output_bbox/BiasAdd",
            "-m",
            "4",
        ],
        "int8:       21 of 23 convolutions run in int8",
    );
    let mut photos: Vec<PathBuf> = std::fs::read_dir(shared.join(CARS))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    photos.sort();
    assert!(photos.len() >= 10);
    // lpd_us_config.txt: BGR, net-scale-factor 1/255.
    let pre = ["--color", "bgr", "--scale", "0.0039215697906911373"];
    let names = ["output_cov/Sigmoid", "output_bbox/BiasAdd"];
    let fp32 = run_saved(d, "fp32.engine", &photos, &pre, &names);
    let int8 = run_saved(d, "int8.engine", &photos, &pre, &names);

    // Grid 30x40 at stride 16, boxes scaled by 35 around the cell centre (DetectNet_v2).
    let (rows, cols, cells) = (30, 40, 1200);
    let (mut worst_cov, mut worst_iou, mut detections, mut crossed) = (0f32, 1f32, 0, Vec::new());
    for image in 0..photos.len() {
        let cov = |o: &[Vec<f32>], cell: usize| o[0][image * cells + cell];
        let bbox = |o: &[Vec<f32>], cell: usize| {
            let (cx, cy) = (
                (cell % cols) as f32 * 16.0 + 0.5,
                (cell / cols) as f32 * 16.0 + 0.5,
            );
            let v = |k: usize| o[1][image * 4 * cells + k * cells + cell] * 35.0;
            [cx - v(0), cy - v(1), cx + v(2), cy + v(3)]
        };
        for cell in 0..rows * cols {
            let (a, b) = (cov(&fp32, cell), cov(&int8, cell));
            worst_cov = worst_cov.max((a - b).abs());
            match (a > 0.5, b > 0.5) {
                (true, true) => {
                    detections += 1;
                    worst_iou = worst_iou.min(iou(bbox(&fp32, cell), bbox(&int8, cell)));
                }
                (false, false) => {}
                _ => crossed.push((image, cell, a, b)),
            }
        }
    }
    println!(
        "{} photos: {detections} detections in both, worst |dcov| {worst_cov:.4}, worst IoU {worst_iou:.3}, crossed 0.5: {crossed:?}",
        photos.len()
    );
    assert!(detections >= 20, "{detections} detections to compare");
    assert!(worst_iou >= 0.9, "worst IoU {worst_iou}");
    assert!(worst_cov < 0.1, "worst coverage difference {worst_cov}");
    // Only a cell sitting at the threshold in FP32 may cross it.
    assert!(crossed.len() <= 1, "{crossed:?}");
    assert!(
        crossed.iter().all(|(_, _, a, _)| (a - 0.5).abs() < 0.02),
        "{crossed:?}"
    );

    // The INT8 plan benches, and a plan is refused by a backend that did not build it.
    let out = taoctl(
        d,
        &["bench", "int8.engine", "--iterations", "2", "--batch", "4"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("median"), "{}", stdout(&out));
}

/// `(file, left, top, width, height)` of every annotated face.
fn faces(dir: &Path) -> Vec<(String, u32, u32, u32, u32)> {
    let mut found = Vec::new();
    for xml in [
        "testing_with_face_landmarks.xml",
        "training_with_face_landmarks.xml",
    ] {
        let text = std::fs::read_to_string(dir.join(xml)).unwrap();
        let mut file = String::new();
        for element in text.split('<') {
            let value = |name: &str| -> Option<String> {
                let start = element.find(&format!("{name}='"))? + name.len() + 2;
                Some(element[start..].split('\'').next()?.to_owned())
            };
            if element.starts_with("image ") {
                file = value("file").unwrap_or_default();
            } else if element.starts_with("box ") {
                let n = |name: &str| value(name).and_then(|v| v.parse::<i64>().ok());
                if let (Some(l), Some(t), Some(w), Some(h)) =
                    (n("left"), n("top"), n("width"), n("height"))
                {
                    let (l, t) = (l.max(0) as u32, t.max(0) as u32);
                    found.push((file.clone(), l, t, w.max(1) as u32, h.max(1) as u32));
                }
            }
        }
    }
    found
}

#[test]
fn fpenet_int8_plan_from_nvidias_cache_keeps_landmarks_within_a_pixel() {
    let Some(shared) =
        shared_dir("fpenet_int8_plan_from_nvidias_cache_keeps_landmarks_within_a_pixel")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    convert_both(
        d,
        &shared.join(FPENET),
        &shared.join("fixtures/real-etlt/fpenet_deployable_v3.0/fpenet_cal.txt"),
        &["-p", "input_face_images,1x1x80x80,1x1x80x80,1x1x80x80"],
        "int8:       15 of 16 convolutions run in int8",
    );
    // Each annotated face cropped (square, 20 % margin) as a photo of its own.
    let face_dir = shared.join(FACES);
    let mut crops = Vec::new();
    for (i, (file, l, t, w, h)) in faces(&face_dir).into_iter().enumerate() {
        let photo = image::open(face_dir.join(&file)).unwrap().to_rgb8();
        let side = w.max(h) * 6 / 5;
        let (cx, cy) = (l + w / 2, t + h / 2);
        let x = cx
            .saturating_sub(side / 2)
            .min(photo.width().saturating_sub(side));
        let y = cy
            .saturating_sub(side / 2)
            .min(photo.height().saturating_sub(side));
        let side = side.min(photo.width()).min(photo.height());
        let crop = image::imageops::crop_imm(&photo, x, y, side, side).to_image();
        let path = d.join(format!("face{i:02}.png"));
        crop.save(&path).unwrap();
        crops.push(path);
    }
    assert!(crops.len() >= 30, "{} faces", crops.len());
    let pre = ["--color", "gray"];
    let fp32 = run_saved(d, "fp32.engine", &crops, &pre, &["softargmax"]);
    let int8 = run_saved(d, "int8.engine", &crops, &pre, &["softargmax"]);
    let shifts: Vec<f32> = fp32[0]
        .chunks(2)
        .zip(int8[0].chunks(2))
        .map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt())
        .collect();
    assert_eq!(shifts.len(), crops.len() * 80);
    let mean = shifts.iter().sum::<f32>() / shifts.len() as f32;
    let worst = shifts.iter().fold(0f32, |m, &s| m.max(s));
    println!(
        "{} faces x 80 landmarks: mean shift {mean:.3} px, worst {worst:.3} px",
        crops.len()
    );
    assert!(mean < 1.0, "mean landmark shift {mean} px");
}
