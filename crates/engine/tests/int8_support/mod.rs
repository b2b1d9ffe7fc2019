//! Helpers of the INT8 engine tests: building FP32 and INT8 engines through plans, DetectNet_v2
//! decoding, and face crops from the shared photos' annotations.
#![allow(dead_code)]

use std::path::Path;

use tao_engine::aligned::AlignedBytes;
use tao_engine::backend::{Backend, BuildConfig, Engine, Precision};
use tao_engine::calibration::CalibrationCache;
use tao_engine::cpu::CpuBackend;
use tao_engine::cpu::int8::{CpuInt8Backend, LayerChoice, plan_decisions};
use tao_engine::plan::Plan;
use tao_graph::ir::Graph;

/// Builds a plan with `backend`, writes it to bytes, reads it back and loads it with the plain CPU
/// backend (as the engine cache does).
pub fn build_and_load(
    backend: &dyn Backend,
    graph: &Graph,
    precision: Precision,
    max_batch: usize,
    threads: usize,
) -> (Box<dyn Engine>, Plan) {
    let config = BuildConfig {
        max_batch,
        precision,
        threads,
    };
    let bytes = backend.build(graph, &config).unwrap().to_bytes();
    let plan = Plan::parse(AlignedBytes::from_slice(&bytes)).unwrap();
    let engine = CpuBackend.load(&plan, threads).unwrap();
    (engine, plan)
}

/// FP32 and INT8 engines of an optimised graph, and the INT8 plan's decisions.
pub fn engines(
    graph: &Graph,
    cache: &CalibrationCache,
    max_batch: usize,
) -> (Box<dyn Engine>, Box<dyn Engine>, Vec<LayerChoice>) {
    let (fp32, _) = build_and_load(&CpuBackend, graph, Precision::Fp32, max_batch, 2);
    let int8_backend = CpuInt8Backend::new(cache.clone());
    let (int8, plan) = build_and_load(&int8_backend, graph, Precision::Int8, max_batch, 2);
    (fp32, int8, plan_decisions(&plan))
}

pub fn run(engine: &mut dyn Engine, batch: usize, input: &[f32]) -> Vec<Vec<f32>> {
    let mut outputs: Vec<Vec<f32>> = engine
        .outputs()
        .iter()
        .map(|o| vec![0.0; o.elements_per_image() * batch])
        .collect();
    let mut views: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
    engine.run(batch, &[input], &mut views).unwrap();
    outputs
}

/// One grid cell's detection in network-input pixels.
#[derive(Clone, Copy, Debug)]
pub struct Detection {
    pub cell: usize,
    pub coverage: f32,
    pub bbox: [f32; 4],
}

/// DetectNet_v2 decoding of one class: cells above `threshold`, box = cell origin + 0.5 ±
/// offsets × `box_norm` (grid stride `stride`), as the element's post-processing does.
pub fn decode(
    coverage: &[f32],
    boxes: &[f32],
    grid: [usize; 2],
    stride: f32,
    box_norm: f32,
    threshold: f32,
) -> Vec<Detection> {
    let cells = grid[0] * grid[1];
    let mut out = Vec::new();
    for (cell, &c) in coverage.iter().enumerate().take(cells) {
        if c <= threshold {
            continue;
        }
        let (i, j) = (cell / grid[1], cell % grid[1]);
        let (cx, cy) = (j as f32 * stride + 0.5, i as f32 * stride + 0.5);
        let o = |k: usize| boxes[k * cells + cell];
        out.push(Detection {
            cell,
            coverage: c,
            bbox: [
                cx - o(0) * box_norm,
                cy - o(1) * box_norm,
                cx + o(2) * box_norm,
                cy + o(3) * box_norm,
            ],
        });
    }
    out
}

pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// A face box of the annotated photos: file and (left, top, width, height).
#[derive(Clone, Debug)]
pub struct FaceBox {
    pub file: String,
    pub rect: [i64; 4],
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}='"))? + name.len() + 2;
    let end = tag[start..].find('\'')? + start;
    Some(tag[start..end].to_owned())
}

/// The face boxes of dlib's image-metadata XML files in `dir` (`<image file=…>` with
/// `<box top left width height>` children).
pub fn face_boxes(dir: &Path) -> Vec<FaceBox> {
    let mut out = Vec::new();
    for name in [
        "testing_with_face_landmarks.xml",
        "training_with_face_landmarks.xml",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let mut file = String::new();
        for tag in text.split('<') {
            if tag.starts_with("image ") {
                file = attribute(tag, "file").unwrap_or_default();
            } else if tag.starts_with("box ") {
                let v = |n: &str| attribute(tag, n).and_then(|s| s.parse::<i64>().ok());
                if let (Some(t), Some(l), Some(w), Some(h)) =
                    (v("top"), v("left"), v("width"), v("height"))
                {
                    out.push(FaceBox {
                        file: file.clone(),
                        rect: [l, t, w, h],
                    });
                }
            }
        }
    }
    out
}

/// A square crop around `rect` (enlarged by 20 % each side, clamped to the photo), converted to
/// gray (ITU-R 601 luma, 0..255) and resized bilinearly to `size`×`size`, NCHW batch 1.
pub fn gray_crop(photo: &Path, rect: [i64; 4], size: usize) -> Vec<f32> {
    let img = image::open(photo)
        .unwrap_or_else(|e| panic!("{}: {e}", photo.display()))
        .to_rgb8();
    let (iw, ih) = (img.width() as f32, img.height() as f32);
    let [l, t, w, h] = rect.map(|v| v as f32);
    let side = w.max(h) * 1.4;
    let (cx, cy) = (l + w / 2.0, t + h / 2.0);
    let (x0, y0) = (cx - side / 2.0, cy - side / 2.0);
    let mut out = vec![0f32; size * size];
    for y in 0..size {
        for x in 0..size {
            let fx = (x0 + (x as f32 + 0.5) * side / size as f32 - 0.5).clamp(0.0, iw - 1.0);
            let fy = (y0 + (y as f32 + 0.5) * side / size as f32 - 0.5).clamp(0.0, ih - 1.0);
            let (xa, ya) = (fx.floor() as u32, fy.floor() as u32);
            let (xb, yb) = ((xa + 1).min(iw as u32 - 1), (ya + 1).min(ih as u32 - 1));
            let (wx, wy) = (fx - xa as f32, fy - ya as f32);
            let luma = |px: u32, py: u32| {
                let p = img.get_pixel(px, py);
                0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
            };
            out[y * size + x] = (luma(xa, ya) * (1.0 - wx) + luma(xb, ya) * wx) * (1.0 - wy)
                + (luma(xa, yb) * (1.0 - wx) + luma(xb, yb) * wx) * wy;
        }
    }
    out
}
