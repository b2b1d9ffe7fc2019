//! Shared test helpers: the fixture folder and the real models.
#![allow(dead_code)]

use std::path::PathBuf;

use tao_graph::ir::{Graph, Tensor};

/// `../shared` (or `$TAO_SHARED_DIR`); `None` with a SKIPPED line when absent, a failure in CI.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("TAO_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    if dir.join("fixtures").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: ../shared is required in CI ({})",
        dir.display()
    );
    println!(
        "SKIPPED: {test}: ../shared not found (looked in {})",
        dir.display()
    );
    None
}

pub fn lpdnet(test: &str) -> Option<Graph> {
    let path = shared_dir(test)?.join("fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_pruned.etlt");
    let payload = etlt::decode_file(&path, "nvidia_tlt").unwrap();
    Some(tao_graph::uff::import(&payload.bytes, Some(&payload.input_name)).unwrap())
}

pub fn fpenet(test: &str) -> Option<Graph> {
    let path =
        shared_dir(test)?.join("fixtures/real-etlt/fpenet_deployable_v3.0/faciallandmarks.etlt");
    let payload = etlt::decode_file(&path, "nvidia_tlt").unwrap();
    Some(tao_graph::onnx::import(&payload.bytes).unwrap())
}

/// Deterministic pseudo-random values in [lo, hi).
pub fn noise(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lo + (hi - lo) * ((x >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

pub fn random_input(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_f32(
        shape.to_vec(),
        noise(shape.iter().product(), seed, 0.0, 1.0),
    )
    .unwrap()
}

/// max |a - b| / max(max |b|, 1e-6): the relative agreement measure used across the project.
pub fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-6);
    a.iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// A photo as the network input: resized (bilinear) to `w`×`h`, channels in `bgr` order when asked,
/// scaled by `scale`, NCHW with batch 1.
pub fn photo_input(path: &std::path::Path, w: usize, h: usize, bgr: bool, scale: f32) -> Vec<f32> {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0f32; 3 * w * h];
    for y in 0..h {
        let fy = ((y as f32 + 0.5) * ih as f32 / h as f32 - 0.5).clamp(0.0, (ih - 1) as f32);
        let (y0, wy) = (fy.floor() as usize, fy - fy.floor());
        let y1 = (y0 + 1).min(ih - 1);
        for x in 0..w {
            let fx = ((x as f32 + 0.5) * iw as f32 / w as f32 - 0.5).clamp(0.0, (iw - 1) as f32);
            let (x0, wx) = (fx.floor() as usize, fx - fx.floor());
            let x1 = (x0 + 1).min(iw - 1);
            for c in 0..3 {
                let p = |xx: usize, yy: usize| img.get_pixel(xx as u32, yy as u32)[c] as f32;
                let v = (p(x0, y0) * (1.0 - wx) + p(x1, y0) * wx) * (1.0 - wy)
                    + (p(x0, y1) * (1.0 - wx) + p(x1, y1) * wx) * wy;
                let channel = if bgr { 2 - c } else { c };
                out[channel * w * h + y * w + x] = v * scale;
            }
        }
    }
    out
}

/// The car photos of the shared media folder.
pub fn car_photos(shared: &std::path::Path) -> Vec<PathBuf> {
    let dir = shared.join("fixtures/media/images/cars");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    photos.sort();
    photos
}
