//! Network outputs → results: DetectNet_v2 grid decoding with per-class thresholds and clustering
//! (NMS, DBSCAN, both, or none), classifier top-1, and per-pixel segmentation classes. Boxes stay in
//! network-input pixels here; the element maps them to the frame.

use std::fmt;

use tao_engine::backend::IoDesc;

/// TAO's DetectNet_v2 box normalisation.
pub const DEFAULT_BOX_NORM: f32 = 35.0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostprocessError(pub String);

impl fmt::Display for PostprocessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PostprocessError {}

/// One object: a box (left, top, width, height) with its class and confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub class_id: u32,
    pub confidence: f32,
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl Detection {
    fn right(&self) -> f32 {
        self.x + self.width
    }

    fn bottom(&self) -> f32 {
        self.y + self.height
    }

    pub fn iou(&self, other: &Detection) -> f32 {
        let w = (self.right().min(other.right()) - self.x.max(other.x)).max(0.0);
        let h = (self.bottom().min(other.bottom()) - self.y.max(other.y)).max(0.0);
        let inter = w * h;
        let union = self.width * self.height + other.width * other.height - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterMode {
    Nms,
    Dbscan,
    /// DBSCAN, then NMS over the merged boxes.
    Hybrid,
    /// nvinfer's cluster-mode 0: OpenCV-style rectangle grouping (see [`group_rectangles`]).
    GroupRectangles,
    None,
}

/// Per-class detection parameters (nvinfer's `[class-attrs-*]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassParams {
    pub pre_cluster_threshold: f32,
    pub post_cluster_threshold: f32,
    pub nms_iou_threshold: f32,
    /// Keep at most this many objects of the class; `None` keeps all.
    pub top_k: Option<usize>,
    /// DBSCAN neighbourhood: boxes with `1 − IoU ≤ eps` are neighbours.
    pub eps: f32,
    /// DBSCAN: neighbours (itself included) a box needs to seed a cluster.
    pub min_boxes: usize,
    /// DBSCAN: smallest sum of confidences of a kept cluster.
    pub dbscan_min_score: f32,
    /// Group rectangles: a group is kept when it has more boxes than this (nvinfer's
    /// `group-threshold`); `None`: `min_boxes − 1`, so a group needs at least `min_boxes` boxes.
    pub group_threshold: Option<usize>,
    /// Size limits in frame pixels; 0 means no limit.
    pub min_width: u32,
    pub min_height: u32,
    pub max_width: u32,
    pub max_height: u32,
}

impl Default for ClassParams {
    fn default() -> ClassParams {
        ClassParams {
            pre_cluster_threshold: 0.2,
            post_cluster_threshold: 0.0,
            nms_iou_threshold: 0.5,
            top_k: None,
            eps: 0.7,
            min_boxes: 1,
            dbscan_min_score: 0.0,
            group_threshold: None,
            min_width: 0,
            min_height: 0,
            max_width: 0,
            max_height: 0,
        }
    }
}

impl ClassParams {
    /// Whether a box of this size (frame pixels) passes the size limits.
    pub fn accepts_size(&self, width: f32, height: f32) -> bool {
        let limit_ok =
            |v: f32, min: u32, max: u32| v >= min as f32 && (max == 0 || v <= max as f32);
        limit_ok(width, self.min_width, self.max_width)
            && limit_ok(height, self.min_height, self.max_height)
    }
}

/// Where the DetectNet_v2 tensors are among the engine outputs and what grid they describe.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectNetLayout {
    pub coverage: usize,
    pub boxes: usize,
    pub classes: usize,
    pub grid_width: usize,
    pub grid_height: usize,
    pub stride_x: f32,
    pub stride_y: f32,
}

fn chw(desc: &IoDesc) -> Option<(usize, usize, usize)> {
    match desc.shape.as_slice() {
        &[c, h, w] => Some((c, h, w)),
        _ => None,
    }
}

impl DetectNetLayout {
    /// Finds the coverage `[C, H, W]` and box `[4C, H, W]` outputs (by name when they are called
    /// `*cov*` / `*bbox*`, else by shape) for a network input of `input_width`×`input_height`.
    pub fn find(
        outputs: &[IoDesc],
        input_width: usize,
        input_height: usize,
    ) -> Result<DetectNetLayout, PostprocessError> {
        let described = || {
            outputs
                .iter()
                .map(|o| format!("`{}` {:?}", o.name, o.shape))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let pair_ok = |c: usize, b: usize| match (chw(&outputs[c]), chw(&outputs[b])) {
            (Some((cc, ch, cw)), Some((bc, bh, bw))) => {
                bc == 4 * cc && ch == bh && cw == bw && cc > 0 && ch > 0 && cw > 0
            }
            _ => false,
        };
        let by_name = |needle: &str| {
            outputs
                .iter()
                .position(|o| o.name.to_ascii_lowercase().contains(needle))
        };
        let pair = match (by_name("cov"), by_name("bbox")) {
            (Some(c), Some(b)) if c != b && pair_ok(c, b) => Some((c, b)),
            _ => (0..outputs.len())
                .flat_map(|c| (0..outputs.len()).map(move |b| (c, b)))
                .find(|&(c, b)| c != b && pair_ok(c, b)),
        };
        let (coverage, boxes) = pair.ok_or_else(|| {
            PostprocessError(format!(
                "not a DetectNet_v2 detector: expected a coverage output [C,H,W] and a box output [4C,H,W], the engine has {}",
                described()
            ))
        })?;
        let (classes, grid_height, grid_width) =
            chw(&outputs[coverage]).ok_or_else(|| PostprocessError(described()))?;
        Ok(DetectNetLayout {
            coverage,
            boxes,
            classes,
            grid_width,
            grid_height,
            stride_x: input_width as f32 / grid_width as f32,
            stride_y: input_height as f32 / grid_height as f32,
        })
    }

    /// Every grid cell above its class's pre-cluster threshold, decoded to a box in network-input
    /// pixels (`cx − o0·norm, cy − o1·norm, cx + o2·norm, cy + o3·norm`, clipped to the input).
    pub fn decode(
        &self,
        coverage: &[f32],
        boxes: &[f32],
        params: &[ClassParams],
        box_norm: f32,
        input_width: usize,
        input_height: usize,
    ) -> Vec<Detection> {
        let cells = self.grid_width * self.grid_height;
        let mut out = Vec::new();
        if coverage.len() < self.classes * cells || boxes.len() < 4 * self.classes * cells {
            return out;
        }
        let (max_x, max_y) = (input_width as f32, input_height as f32);
        for class in 0..self.classes {
            let Some(p) = params.get(class).or(params.last()) else {
                continue;
            };
            let cov = &coverage[class * cells..(class + 1) * cells];
            for (cell, &confidence) in cov.iter().enumerate() {
                // NaN coverage is no detection either.
                if confidence.is_nan() || confidence <= p.pre_cluster_threshold {
                    continue;
                }
                let (i, j) = (cell / self.grid_width, cell % self.grid_width);
                let cx = j as f32 * self.stride_x + 0.5;
                let cy = i as f32 * self.stride_y + 0.5;
                let o = |k: usize| boxes[(4 * class + k) * cells + cell];
                let x1 = (cx - o(0) * box_norm).clamp(0.0, max_x);
                let y1 = (cy - o(1) * box_norm).clamp(0.0, max_y);
                let x2 = (cx + o(2) * box_norm).clamp(0.0, max_x);
                let y2 = (cy + o(3) * box_norm).clamp(0.0, max_y);
                if x2 > x1 && y2 > y1 {
                    out.push(Detection {
                        class_id: class as u32,
                        confidence,
                        x: x1,
                        y: y1,
                        width: x2 - x1,
                        height: y2 - y1,
                    });
                }
            }
        }
        out
    }
}

/// Clusters candidates class by class, then applies the post-cluster threshold and top-k. Output is
/// sorted by class, then by decreasing confidence.
pub fn cluster(
    candidates: Vec<Detection>,
    mode: ClusterMode,
    params: &[ClassParams],
) -> Vec<Detection> {
    let default = ClassParams::default();
    let mut classes: Vec<u32> = candidates.iter().map(|d| d.class_id).collect();
    classes.sort_unstable();
    classes.dedup();
    let mut out = Vec::new();
    for class in classes {
        let p = params
            .get(class as usize)
            .or(params.last())
            .unwrap_or(&default);
        let mut mine: Vec<Detection> = candidates
            .iter()
            .filter(|d| d.class_id == class)
            .copied()
            .collect();
        sort_by_confidence(&mut mine);
        let mut kept = match mode {
            ClusterMode::None => mine,
            ClusterMode::Nms => nms(mine, p.nms_iou_threshold),
            ClusterMode::Dbscan => dbscan(&mine, p),
            ClusterMode::Hybrid => nms(dbscan(&mine, p), p.nms_iou_threshold),
            ClusterMode::GroupRectangles => group_rectangles(
                &mine,
                p.eps,
                p.group_threshold
                    .unwrap_or_else(|| p.min_boxes.saturating_sub(1)),
            ),
        };
        kept.retain(|d| d.confidence >= p.post_cluster_threshold);
        if let Some(k) = p.top_k {
            kept.truncate(k);
        }
        out.extend(kept);
    }
    out
}

fn sort_by_confidence(d: &mut [Detection]) {
    d.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
}

/// Greedy non-maximum suppression over boxes sorted by decreasing confidence.
pub fn nms(sorted: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    let mut kept: Vec<Detection> = Vec::new();
    for d in sorted {
        if kept.iter().all(|k| k.iou(&d) <= iou_threshold) {
            kept.push(d);
        }
    }
    kept
}

/// DBSCAN with distance `1 − IoU`; each cluster becomes its confidence-weighted mean box carrying
/// the cluster's best confidence. Boxes in no cluster are dropped.
pub fn dbscan(sorted: &[Detection], p: &ClassParams) -> Vec<Detection> {
    let n = sorted.len();
    let neighbours = |i: usize| -> Vec<usize> {
        (0..n)
            .filter(|&j| 1.0 - sorted[i].iou(&sorted[j]) <= p.eps)
            .collect()
    };
    const UNSEEN: usize = usize::MAX;
    const NOISE: usize = usize::MAX - 1;
    let mut label = vec![UNSEEN; n];
    let mut clusters: Vec<Vec<usize>> = Vec::new();
    for i in 0..n {
        if label[i] != UNSEEN {
            continue;
        }
        let seed = neighbours(i);
        if seed.len() < p.min_boxes.max(1) {
            label[i] = NOISE;
            continue;
        }
        let id = clusters.len();
        let mut members = vec![i];
        label[i] = id;
        let mut queue = seed;
        while let Some(j) = queue.pop() {
            if label[j] == NOISE {
                label[j] = id;
                members.push(j);
            }
            if label[j] != UNSEEN {
                continue;
            }
            label[j] = id;
            members.push(j);
            let more = neighbours(j);
            if more.len() >= p.min_boxes.max(1) {
                queue.extend(more);
            }
        }
        clusters.push(members);
    }
    let mut out: Vec<Detection> = clusters
        .into_iter()
        .filter_map(|members| {
            let total: f32 = members.iter().map(|&m| sorted[m].confidence).sum();
            if total < p.dbscan_min_score || total <= 0.0 {
                return None;
            }
            let mut acc = [0f32; 4];
            let mut best = 0f32;
            for &m in &members {
                let d = &sorted[m];
                let w = d.confidence / total;
                acc[0] += d.x * w;
                acc[1] += d.y * w;
                acc[2] += d.right() * w;
                acc[3] += d.bottom() * w;
                best = best.max(d.confidence);
            }
            Some(Detection {
                class_id: sorted[members[0]].class_id,
                confidence: best,
                x: acc[0],
                y: acc[1],
                width: acc[2] - acc[0],
                height: acc[3] - acc[1],
            })
        })
        .collect();
    sort_by_confidence(&mut out);
    out
}

/// Whether two boxes are "similar" in OpenCV's rectangle-grouping sense: every edge of one lies
/// within `eps · (mean of the smaller width and the smaller height)` of the same edge of the other.
fn similar_rectangles(a: &Detection, b: &Detection, eps: f32) -> bool {
    let delta = eps * (a.width.min(b.width) + a.height.min(b.height)) * 0.5;
    (a.x - b.x).abs() <= delta
        && (a.y - b.y).abs() <= delta
        && (a.right() - b.right()).abs() <= delta
        && (a.bottom() - b.bottom()).abs() <= delta
}

/// Rectangle grouping as nvinfer's cluster-mode 0 does it (OpenCV `groupRectangles`): boxes are
/// partitioned into groups by the transitive closure of [`similar_rectangles`]; groups of at most
/// `group_threshold` boxes are dropped; each remaining group becomes the plain mean of its boxes,
/// carrying the group's best confidence; finally a kept box lying inside another kept box (with
/// an `eps`-sized margin) is dropped when the other group is clearly stronger (more than
/// `max(3, n)` boxes against its `n`) or its own group is small (fewer than 3 boxes).
pub fn group_rectangles(boxes: &[Detection], eps: f32, group_threshold: usize) -> Vec<Detection> {
    let n = boxes.len();
    // Union-find over the similarity relation.
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            if similar_rectangles(&boxes[i], &boxes[j], eps) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                if a != b {
                    parent[b] = a;
                }
            }
        }
    }
    // Groups in order of their first box (input is sorted by confidence).
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in 0..n {
        let r = root(&mut parent, i);
        match groups.iter_mut().find(|(g, _)| *g == r) {
            Some((_, members)) => members.push(i),
            None => groups.push((r, vec![i])),
        }
    }
    let averaged: Vec<(Detection, usize)> = groups
        .into_iter()
        .filter(|(_, members)| members.len() > group_threshold)
        .map(|(_, members)| {
            let count = members.len() as f32;
            let mut sum = [0f32; 4];
            let mut best = 0f32;
            for &m in &members {
                let d = &boxes[m];
                sum[0] += d.x;
                sum[1] += d.y;
                sum[2] += d.width;
                sum[3] += d.height;
                best = best.max(d.confidence);
            }
            let mean = Detection {
                class_id: boxes[members[0]].class_id,
                confidence: best,
                x: sum[0] / count,
                y: sum[1] / count,
                width: sum[2] / count,
                height: sum[3] / count,
            };
            (mean, members.len())
        })
        .collect();
    let inside_stronger = |i: usize| {
        let (inner, n_inner) = &averaged[i];
        averaged.iter().enumerate().any(|(j, (outer, n_outer))| {
            let (dx, dy) = (outer.width * eps, outer.height * eps);
            i != j
                && inner.x >= outer.x - dx
                && inner.y >= outer.y - dy
                && inner.right() <= outer.right() + dx
                && inner.bottom() <= outer.bottom() + dy
                && (*n_outer > (*n_inner).max(3) || *n_inner < 3)
        })
    };
    let mut out: Vec<Detection> = (0..averaged.len())
        .filter(|&i| !inside_stronger(i))
        .map(|i| averaged[i].0)
        .collect();
    sort_by_confidence(&mut out);
    out
}

/// Top-1 of a classifier output: `(class, confidence)` when it reaches `threshold`.
pub fn classify(scores: &[f32], threshold: f32) -> Option<(u32, f32)> {
    let (class, &best) = scores
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    (best >= threshold).then_some((class as u32, best))
}

/// Per-pixel class of a `[C, H, W]` score map; pixels whose best score is below `threshold` get
/// [`NO_CLASS`].
pub const NO_CLASS: u8 = 255;

pub fn segment(scores: &[f32], classes: usize, threshold: f32) -> Vec<u8> {
    if classes == 0 || !scores.len().is_multiple_of(classes) {
        return Vec::new();
    }
    let pixels = scores.len() / classes;
    (0..pixels)
        .map(|px| {
            let mut best = (NO_CLASS, threshold);
            for c in 0..classes.min(NO_CLASS as usize) {
                let v = scores[c * pixels + px];
                if v >= best.1 {
                    best = (c as u8, v);
                }
            }
            best.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class_id: u32, confidence: f32, x: f32, y: f32, w: f32, h: f32) -> Detection {
        Detection {
            class_id,
            confidence,
            x,
            y,
            width: w,
            height: h,
        }
    }

    fn io(name: &str, shape: &[usize]) -> IoDesc {
        IoDesc {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn finds_lpdnet_outputs_by_name_and_shape() {
        let outs = [
            io("output_cov/Sigmoid", &[1, 30, 40]),
            io("output_bbox/BiasAdd", &[4, 30, 40]),
        ];
        let l = DetectNetLayout::find(&outs, 640, 480).unwrap();
        assert_eq!((l.coverage, l.boxes, l.classes), (0, 1, 1));
        assert_eq!((l.stride_x, l.stride_y), (16.0, 16.0));
        // Same shapes, other names and order.
        let outs = [io("b", &[12, 34, 60]), io("a", &[3, 34, 60])];
        let l = DetectNetLayout::find(&outs, 960, 544).unwrap();
        assert_eq!((l.coverage, l.boxes, l.classes), (1, 0, 3));
        let err = DetectNetLayout::find(&[io("x", &[10])], 10, 10).unwrap_err();
        assert!(err.0.contains("`x` [10]"), "{err}");
    }

    #[test]
    fn decode_follows_the_detectnet_formula() {
        // One class on a 2x3 grid with stride 16; only cell (1, 2) is above threshold.
        let layout =
            DetectNetLayout::find(&[io("cov", &[1, 2, 3]), io("bbox", &[4, 2, 3])], 48, 32)
                .unwrap();
        let mut cov = vec![0.1f32; 6];
        cov[5] = 0.9;
        let mut boxes = vec![0f32; 24];
        // o0..o3 for cell 5: the box spans cx-0.2*35 .. cx+0.1*35 horizontally.
        for (k, v) in [0.2f32, 0.1, 0.1, 0.5].iter().enumerate() {
            boxes[k * 6 + 5] = *v;
        }
        let p = [ClassParams::default()];
        let d = layout.decode(&cov, &boxes, &p, 35.0, 48, 32);
        assert_eq!(d.len(), 1);
        let (cx, cy) = (2.0 * 16.0 + 0.5, 16.0 + 0.5);
        let d = d[0];
        assert!((d.x - (cx - 7.0)).abs() < 1e-4);
        assert!((d.y - (cy - 3.5)).abs() < 1e-4);
        // Right edge at cx + 3.5 (inside the input); bottom cy + 17.5 = 34 is clipped to 32.
        assert!((d.right() - (cx + 3.5)).abs() < 1e-4);
        assert!((d.bottom() - 32.0).abs() < 1e-4);
        assert_eq!(d.confidence, 0.9);
        // A NaN coverage is not a detection.
        cov[5] = f32::NAN;
        assert!(layout.decode(&cov, &boxes, &p, 35.0, 48, 32).is_empty());
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let c = vec![
            det(0, 0.9, 0.0, 0.0, 10.0, 10.0),
            det(0, 0.8, 1.0, 1.0, 10.0, 10.0),
            det(0, 0.7, 50.0, 50.0, 10.0, 10.0),
            det(1, 0.6, 1.0, 1.0, 10.0, 10.0),
        ];
        let p = [ClassParams::default()];
        let out = cluster(c.clone(), ClusterMode::Nms, &p);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].confidence, 0.9);
        assert_eq!(out[1].confidence, 0.7);
        assert_eq!(out[2].class_id, 1);
        assert_eq!(cluster(c.clone(), ClusterMode::None, &p).len(), 4);
        let top1 = [ClassParams {
            top_k: Some(1),
            ..ClassParams::default()
        }];
        assert_eq!(cluster(c, ClusterMode::Nms, &top1).len(), 2);
    }

    #[test]
    fn dbscan_merges_a_cluster_and_drops_lonely_boxes() {
        let c = vec![
            det(0, 0.8, 0.0, 0.0, 10.0, 10.0),
            det(0, 0.4, 2.0, 0.0, 10.0, 10.0),
            det(0, 0.5, 100.0, 100.0, 10.0, 10.0),
        ];
        let p = [ClassParams {
            min_boxes: 2,
            ..ClassParams::default()
        }];
        let out = cluster(c.clone(), ClusterMode::Dbscan, &p);
        assert_eq!(out.len(), 1);
        // Confidence-weighted mean: x = (0·0.8 + 2·0.4) / 1.2.
        assert!((out[0].x - 0.8 / 1.2).abs() < 1e-5);
        assert_eq!(out[0].confidence, 0.8);
        let p1 = [ClassParams::default()];
        assert_eq!(cluster(c.clone(), ClusterMode::Dbscan, &p1).len(), 2);
        assert_eq!(cluster(c, ClusterMode::Hybrid, &p1).len(), 2);
    }

    #[test]
    fn group_rectangles_averages_similar_boxes_and_drops_small_groups() {
        // Three near-identical boxes, two similar ones elsewhere, one lonely box.
        let c = vec![
            det(0, 0.9, 10.0, 10.0, 40.0, 20.0),
            det(0, 0.8, 12.0, 11.0, 40.0, 20.0),
            det(0, 0.7, 14.0, 9.0, 42.0, 22.0),
            det(0, 0.6, 200.0, 100.0, 30.0, 30.0),
            det(0, 0.5, 203.0, 102.0, 30.0, 30.0),
            det(0, 0.95, 400.0, 10.0, 10.0, 10.0),
        ];
        // eps 0.2: delta = 0.2 · (40 + 20) / 2 = 6 for the first group.
        let out = group_rectangles(&c, 0.2, 1);
        assert_eq!(out.len(), 2, "{out:?}");
        // Plain means: (10 + 12 + 14) / 3 = 12, (10 + 11 + 9) / 3 = 10, widths 122 / 3, 62 / 3.
        let first = out.iter().find(|d| d.x < 100.0).unwrap();
        assert!((first.x - 12.0).abs() < 1e-5 && (first.y - 10.0).abs() < 1e-5);
        assert!((first.width - 122.0 / 3.0).abs() < 1e-4);
        assert!((first.height - 62.0 / 3.0).abs() < 1e-4);
        assert_eq!(first.confidence, 0.9);
        let second = out.iter().find(|d| d.x > 100.0).unwrap();
        assert!((second.x - 201.5).abs() < 1e-5 && (second.y - 101.0).abs() < 1e-5);
        assert_eq!(second.confidence, 0.6);
        // Sorted by confidence.
        assert!(out[0].confidence >= out[1].confidence);
        // A higher threshold keeps only the group of three; threshold 0 keeps the lonely box too.
        assert_eq!(group_rectangles(&c, 0.2, 2).len(), 1);
        assert_eq!(group_rectangles(&c, 0.2, 0).len(), 3);
        // eps 0 groups only identical boxes: every group has one box and threshold 1 drops all.
        assert!(group_rectangles(&c, 0.0, 1).is_empty());
        // Chains group transitively: a~b and b~c although a and c are far apart.
        let chain = vec![
            det(0, 0.9, 0.0, 0.0, 20.0, 20.0),
            det(0, 0.8, 4.0, 0.0, 20.0, 20.0),
            det(0, 0.7, 8.0, 0.0, 20.0, 20.0),
        ];
        assert!(!similar_rectangles(&chain[0], &chain[2], 0.2));
        let grouped = group_rectangles(&chain, 0.2, 2);
        assert_eq!(grouped.len(), 1);
        assert!((grouped[0].x - 4.0).abs() < 1e-5);
    }

    #[test]
    fn group_rectangles_drops_weak_boxes_inside_strong_groups() {
        // A strong group of four around (0,0,100,100) and a pair of small boxes inside it.
        let mut c: Vec<Detection> = (0..4)
            .map(|i| det(0, 0.9 - 0.01 * i as f32, i as f32, 0.0, 100.0, 100.0))
            .collect();
        c.push(det(0, 0.95, 40.0, 40.0, 10.0, 10.0));
        c.push(det(0, 0.94, 41.0, 40.0, 10.0, 10.0));
        let out = group_rectangles(&c, 0.2, 1);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!((out[0].width - 100.0).abs() < 1e-5);
        // Through cluster() with the mode and the minBoxes fallback (min_boxes 2 → threshold 1).
        let p = [ClassParams {
            eps: 0.2,
            min_boxes: 2,
            ..ClassParams::default()
        }];
        assert_eq!(
            cluster(c.clone(), ClusterMode::GroupRectangles, &p).len(),
            1
        );
        let explicit = [ClassParams {
            eps: 0.2,
            group_threshold: Some(4),
            ..ClassParams::default()
        }];
        assert!(cluster(c, ClusterMode::GroupRectangles, &explicit).is_empty());
    }

    #[test]
    fn size_limits_and_classifier() {
        let p = ClassParams {
            min_width: 5,
            max_height: 20,
            ..ClassParams::default()
        };
        assert!(p.accepts_size(5.0, 20.0));
        assert!(!p.accepts_size(4.0, 10.0));
        assert!(!p.accepts_size(10.0, 21.0));
        assert_eq!(classify(&[0.1, 0.7, 0.2], 0.5), Some((1, 0.7)));
        assert_eq!(classify(&[0.1, 0.4, 0.2], 0.5), None);
        assert_eq!(classify(&[], 0.0), None);
        assert_eq!(segment(&[0.9, 0.1, 0.1, 0.2], 2, 0.15), vec![0, 1]);
        assert_eq!(segment(&[0.9, 0.1, 0.1, 0.1], 2, 0.15), vec![0, NO_CLASS]);
    }
}
