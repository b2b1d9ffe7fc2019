//! DetectNet_v2 grid decode on the GPU, after an engine run: every grid cell whose coverage is above
//! its class's threshold becomes a box in network-input pixels (`cx − o0·norm, cy − o1·norm,
//! cx + o2·norm, cy + o3·norm`, clipped to the input, with `cx = col·stride_x + 0.5`), the formula
//! of the element's CPU decoder. Only the candidates cross back to the host; clustering stays on the
//! CPU. [`decode_cpu`] is the same computation on the host, the reference the GPU result is
//! checked against.

/// Most classes one decode takes (thresholds travel as a kernel parameter).
pub const MAX_CLASSES: usize = 16;

/// The grid and the decode constants.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeParams {
    pub classes: usize,
    pub grid_width: usize,
    pub grid_height: usize,
    pub stride_x: f32,
    pub stride_y: f32,
    pub box_norm: f32,
    pub input_width: f32,
    pub input_height: f32,
    /// Per class: coverage must exceed this (a single value applies to every class).
    pub thresholds: Vec<f32>,
}

impl DecodeParams {
    pub fn cells(&self) -> usize {
        self.grid_width * self.grid_height
    }

    /// Per-class thresholds, checked.
    pub fn threshold_table(&self) -> Result<[f32; MAX_CLASSES], String> {
        if self.classes == 0 || self.classes > MAX_CLASSES || self.cells() == 0 {
            return Err(format!(
                "DetectNet decode takes 1 to {MAX_CLASSES} classes on a non-empty grid ({} classes, {}x{} grid)",
                self.classes, self.grid_width, self.grid_height
            ));
        }
        let mut t = [0f32; MAX_CLASSES];
        for (c, slot) in t.iter_mut().enumerate().take(self.classes) {
            *slot = match self.thresholds.len() {
                1 => self.thresholds[0],
                n if n == self.classes => self.thresholds[c],
                n => {
                    return Err(format!(
                        "{n} thresholds for {} classes (give one, or one per class)",
                        self.classes
                    ));
                }
            };
        }
        Ok(t)
    }
}

/// One decoded cell. `#[repr(C)]` as the kernel writes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Candidate {
    pub image: u32,
    pub class_id: u32,
    /// Grid cell (row · grid width + column): with image and class, the order of [`decode_cpu`].
    pub cell: u32,
    pub confidence: f32,
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// Box of one cell, or `None` when it is empty after clipping (shared by both decoders' logic).
fn cell_box(p: &DecodeParams, cell: usize, o: [f32; 4]) -> Option<[f32; 4]> {
    let (i, j) = (cell / p.grid_width, cell % p.grid_width);
    let cx = j as f32 * p.stride_x + 0.5;
    let cy = i as f32 * p.stride_y + 0.5;
    let x1 = (cx - o[0] * p.box_norm).clamp(0.0, p.input_width);
    let y1 = (cy - o[1] * p.box_norm).clamp(0.0, p.input_height);
    let x2 = (cx + o[2] * p.box_norm).clamp(0.0, p.input_width);
    let y2 = (cy + o[3] * p.box_norm).clamp(0.0, p.input_height);
    (x2 > x1 && y2 > y1).then_some([x1, y1, x2 - x1, y2 - y1])
}

/// The decode on the host: `coverage` is `[batch, classes, H, W]`, `boxes` `[batch, 4·classes, H, W]`
/// (FP32, NCHW, as the engine outputs them). Ordered by image, class, cell.
pub fn decode_cpu(
    coverage: &[f32],
    boxes: &[f32],
    batch: usize,
    p: &DecodeParams,
) -> Result<Vec<Candidate>, String> {
    let thresholds = p.threshold_table()?;
    let cells = p.cells();
    if coverage.len() < batch * p.classes * cells || boxes.len() < batch * 4 * p.classes * cells {
        return Err("coverage or box tensor smaller than the grid".into());
    }
    let mut out = Vec::new();
    for image in 0..batch {
        for class in 0..p.classes {
            let cov = &coverage[(image * p.classes + class) * cells..][..cells];
            let b = &boxes[(image * 4 * p.classes + 4 * class) * cells..][..4 * cells];
            for (cell, &confidence) in cov.iter().enumerate() {
                // NaN coverage is no detection either.
                if confidence.is_nan() || confidence <= thresholds[class] {
                    continue;
                }
                let o = [
                    b[cell],
                    b[cells + cell],
                    b[2 * cells + cell],
                    b[3 * cells + cell],
                ];
                if let Some([x, y, width, height]) = cell_box(p, cell, o) {
                    out.push(Candidate {
                        image: image as u32,
                        class_id: class as u32,
                        cell: cell as u32,
                        confidence,
                        x,
                        y,
                        width,
                        height,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Puts candidates in [`decode_cpu`]'s order (the GPU writes them in any order).
pub fn sort(candidates: &mut [Candidate]) {
    candidates.sort_by_key(|c| (c.image, c.class_id, c.cell));
}
