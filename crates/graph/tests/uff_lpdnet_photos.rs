//! LPDNet imported from UFF and run by the reference executor on real photos of US cars.

mod uff_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tao_graph::ir::{Graph, Tensor};
use tao_graph::{reference, uff};
use uff_support::{LPD_DIR, shared_dir};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
/// DeepStream's `net-scale-factor` from `lpd_us_config.txt` (0.0039215697906911373 = 1/255).
const NET_SCALE: f32 = 1.0 / 255.0;
const GRID_STRIDE: f32 = 16.0;

struct Photo {
    file: String,
    /// Plate box in network pixels (x, y, w, h).
    plate: [f32; 4],
}

struct Observed {
    photos: Vec<(Photo, Tensor)>,
    /// Largest |value| of every tensor over all photos.
    abs_max: BTreeMap<String, f32>,
    shared: PathBuf,
}

/// Preprocesses like nvinfer with `model-color-format=1`: stretch to 640x480, BGR planes, x/255.
fn load_photo(path: &Path) -> (Tensor, u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (w, h) = (img.width(), img.height());
    let rgb = img
        .resize_exact(WIDTH, HEIGHT, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let plane = (WIDTH * HEIGHT) as usize;
    let mut data = vec![0f32; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        for (c, &channel) in [2usize, 1, 0].iter().enumerate() {
            data[c * plane + i] = f32::from(px[channel]) * NET_SCALE;
        }
    }
    let t = Tensor::from_f32(vec![1, 3, HEIGHT as usize, WIDTH as usize], data).unwrap();
    (t, w, h)
}

fn lpdnet(shared: &Path) -> Graph {
    let bytes = std::fs::read(shared.join(LPD_DIR).join("usa_pruned.etlt")).unwrap();
    let payload = etlt::decode_bytes(&bytes, "nvidia_tlt").unwrap();
    uff::import(&payload.bytes, Some(&payload.input_name)).unwrap()
}

fn observed(test: &str) -> Option<&'static Observed> {
    static CELL: OnceLock<Option<Observed>> = OnceLock::new();
    let shared = shared_dir(test)?;
    CELL.get_or_init(|| Some(run_photos(shared))).as_ref()
}

fn run_photos(shared: PathBuf) -> Observed {
    let graph = lpdnet(&shared);
    let dir = shared.join("fixtures/media/images/cars");
    let mut truth: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    truth.sort();
    let mut photos = Vec::new();
    let mut abs_max: BTreeMap<String, f32> = BTreeMap::new();
    for txt in truth {
        let line = std::fs::read_to_string(&txt).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let file = fields[0].to_owned();
        let bx: Vec<f32> = fields[1..5].iter().map(|v| v.parse().unwrap()).collect();
        let (input, w, h) = load_photo(&dir.join(&file));
        let (sx, sy) = (WIDTH as f32 / w as f32, HEIGHT as f32 / h as f32);
        let plate = [bx[0] * sx, bx[1] * sy, bx[2] * sx, bx[3] * sy];
        let start = std::time::Instant::now();
        let outputs = reference::run_observed(&graph, &[("input_1", input)], |name, t| {
            let m = t.to_f32_vec().iter().fold(0f32, |m, v| m.max(v.abs()));
            let e = abs_max.entry(name.to_owned()).or_insert(0.0);
            *e = e.max(m);
        })
        .unwrap();
        println!("{file}: ran in {:.1?}", start.elapsed());
        let cov = outputs
            .into_iter()
            .find(|(n, _)| n == "output_cov/Sigmoid")
            .unwrap()
            .1;
        photos.push((Photo { file, plate }, cov));
    }
    Observed {
        photos,
        abs_max,
        shared,
    }
}

#[test]
fn coverage_peaks_on_the_plate() {
    let Some(obs) = observed("coverage_peaks_on_the_plate") else {
        return;
    };
    let mut found = 0;
    for (photo, cov) in &obs.photos {
        assert_eq!(cov.shape(), [1, 1, 30, 40]);
        let values = cov.as_f32().unwrap();
        let (peak, &value) = values
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        let (row, col) = ((peak / 40) as f32, (peak % 40) as f32);
        let [x, y, w, h] = photo.plate;
        // The peak cell's centre lies in the plate box grown by one cell on every side.
        let (cx, cy) = ((col + 0.5) * GRID_STRIDE, (row + 0.5) * GRID_STRIDE);
        let hit = cx >= x - GRID_STRIDE
            && cx <= x + w + GRID_STRIDE
            && cy >= y - GRID_STRIDE
            && cy <= y + h + GRID_STRIDE;
        println!(
            "{}: peak {value:.3} at cell (row {row}, col {col}), plate cells rows {:.1}..{:.1} cols {:.1}..{:.1}: {}",
            photo.file,
            y / GRID_STRIDE,
            (y + h) / GRID_STRIDE,
            x / GRID_STRIDE,
            (x + w) / GRID_STRIDE,
            if hit { "FOUND" } else { "missed" }
        );
        found += usize::from(hit);
    }
    println!("plates found: {found} / {}", obs.photos.len());
    // A wrong layout, filter order or padding scatters the peak; a clear majority must hit.
    assert!(
        found * 10 >= obs.photos.len() * 8,
        "LPDNet found only {found} of {} plates",
        obs.photos.len()
    );
}

/// `name: <hex f32 scale>` lines after the `TRT-…` header; amax = scale * 127.
fn calibration_amax(path: &Path) -> Vec<(String, f32)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("TRT-"));
    lines
        .map(|line| {
            let (name, hex) = line.rsplit_once(": ").unwrap();
            let scale = f32::from_bits(u32::from_str_radix(hex.trim(), 16).unwrap());
            (name.to_owned(), scale * 127.0)
        })
        .collect()
}

#[test]
fn activation_ranges_match_nvidia_calibration() {
    let Some(obs) = observed("activation_ranges_match_nvidia_calibration") else {
        return;
    };
    let cal = calibration_amax(&obs.shared.join(LPD_DIR).join("usa_lpd_cal.bin"));
    let mut worst = ("", 1f32);
    let mut matched = 0;
    println!(
        "{:<40} {:>10} {:>10} {:>7}",
        "tensor", "nvidia", "observed", "ratio"
    );
    for (name, amax) in &cal {
        let seen = *obs
            .abs_max
            .get(name)
            .unwrap_or_else(|| panic!("the executor never produced `{name}`"));
        let ratio = (seen / amax).max(amax / seen);
        println!("{name:<40} {amax:>10.4} {seen:>10.4} {ratio:>7.3}");
        matched += 1;
        if ratio > worst.1 {
            worst = (name, ratio);
        }
    }
    println!(
        "{matched} of {} calibrated tensors compared; worst ratio {:.3} ({})",
        cal.len(),
        worst.1,
        worst.0
    );
    assert_eq!(matched, cal.len());
    // Entropy calibration clips outliers, so its amax sits a little below the true maximum; a wrong
    // import (layout, BatchNorm constants, padding) moves ranges by far more than 2x.
    assert!(worst.1 <= 2.0, "`{}` is off by {:.2}x", worst.0, worst.1);
}
