//! What `taoinfer` attaches to buffers and posts on the bus, and how to read it back.
//!
//! Detections: one `GstVideoRegionOfInterestMeta` per object, `roi_type` = the label, ids 0, 1, …
//! in decreasing confidence per class, with a parameter structure
//! `detection, label=(string), class-id=(uint), confidence=(double)`.
//!
//! Other results travel as `GstCustomMeta` (GStreamer ≥ 1.20), whose structure C applications get
//! with `gst_buffer_get_custom_meta (buf, NAME)` + `gst_custom_meta_get_structure`, and Python
//! applications with `buf.get_custom_meta(NAME).get_structure()`:
//! - [`CLASSIFICATION_META`]: `TaoClassification, class-id=(uint), label=(string),
//!   confidence=(double)`.
//! - [`SEGMENTATION_META`]: `TaoSegmentation, width=(uint), height=(uint), classes=(uint),
//!   mask=(GBytes)`: one byte per pixel, the class index or 255 when no class reaches the
//!   threshold.
//! - [`TENSOR_META`]: `TaoTensors, tensors=< (structure)"tensor, name=(string)…, dims=(int)< 1, 30,
//!   40 >, dtype=(string)float32, data=(GBytes)…" , … >`: every engine output of the frame, batch
//!   dimension included, data as little-endian IEEE-754 floats in row-major order.

use gst::glib;

pub const CLASSIFICATION_META: &str = "TaoClassification";
pub const SEGMENTATION_META: &str = "TaoSegmentation";
pub const TENSOR_META: &str = "TaoTensors";
/// Name of the parameter structure on each region-of-interest meta.
pub const DETECTION_PARAM: &str = "detection";

/// Registers the custom metas (idempotent; called from plugin init).
pub fn register() {
    for name in [CLASSIFICATION_META, SEGMENTATION_META, TENSOR_META] {
        if !gst::meta::CustomMeta::is_registered(name) {
            // No tags: the metas describe the frame content and survive any transform that keeps it.
            gst::meta::CustomMeta::register(name, &[]);
        }
    }
}

/// One object in frame pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameObject {
    pub class_id: u32,
    pub label: String,
    pub confidence: f64,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl FrameObject {
    /// The structure posted in element messages for this object.
    pub fn to_structure(&self) -> gst::Structure {
        gst::Structure::builder("object")
            .field("label", &self.label)
            .field("class-id", self.class_id)
            .field("confidence", self.confidence)
            .field("x", self.x)
            .field("y", self.y)
            .field("width", self.width)
            .field("height", self.height)
            .build()
    }
}

/// Name of the parameter structure a secondary classifier adds to a region-of-interest meta.
pub const CLASSIFICATION_PARAM: &str = "classification";

/// A region-of-interest meta as a secondary stage sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// Position among the buffer's region-of-interest metas.
    pub position: usize,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// From the `detection` parameters, when present.
    pub class_id: Option<u32>,
    pub gie_id: Option<u32>,
}

/// Every region-of-interest meta of the buffer, in order.
pub fn regions(buffer: &gst::BufferRef) -> Vec<Region> {
    buffer
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .enumerate()
        .map(|(position, m)| {
            let (x, y, width, height) = m.rect();
            let param = m.param(DETECTION_PARAM);
            Region {
                position,
                x,
                y,
                width,
                height,
                class_id: param.and_then(|p| p.get::<u32>("class-id").ok()),
                gie_id: param.and_then(|p| p.get::<u32>("gie-id").ok()),
            }
        })
        .collect()
}

/// Adds a secondary classifier's result to the region-of-interest meta at `position`:
/// `classification, gie-id=…, class-id=…, label=…, confidence=…`.
pub fn add_region_classification(
    buffer: &mut gst::BufferRef,
    position: usize,
    gie_id: u32,
    class_id: u32,
    label: &str,
    confidence: f64,
) {
    if let Some(mut meta) = buffer
        .iter_meta_mut::<gst_video::VideoRegionOfInterestMeta>()
        .nth(position)
    {
        meta.add_param(
            gst::Structure::builder(CLASSIFICATION_PARAM)
                .field("gie-id", gie_id)
                .field("class-id", class_id)
                .field("label", label)
                .field("confidence", confidence)
                .build(),
        );
    }
}

/// The `classification` parameters of each region-of-interest meta (`None` where it has none):
/// (gie-id, class-id, label, confidence).
pub fn region_classifications(buffer: &gst::BufferRef) -> Vec<Option<(u32, u32, String, f64)>> {
    buffer
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .map(|m| {
            let p = m.param(CLASSIFICATION_PARAM)?;
            Some((
                p.get::<u32>("gie-id").ok()?,
                p.get::<u32>("class-id").ok()?,
                p.get::<String>("label").ok()?,
                p.get::<f64>("confidence").ok()?,
            ))
        })
        .collect()
}

pub fn add_objects(buffer: &mut gst::BufferRef, objects: &[FrameObject], gie_id: u32) {
    for (id, o) in objects.iter().enumerate() {
        let mut meta = gst_video::VideoRegionOfInterestMeta::add(
            buffer,
            &o.label,
            (o.x, o.y, o.width, o.height),
        );
        meta.set_id(i32::try_from(id).unwrap_or(i32::MAX));
        meta.add_param(
            gst::Structure::builder(DETECTION_PARAM)
                .field("label", &o.label)
                .field("class-id", o.class_id)
                .field("confidence", o.confidence)
                .field("gie-id", gie_id)
                .build(),
        );
    }
}

/// Objects attached by [`add_objects`] (or by any element writing the same parameter structure;
/// region-of-interest metas without it are read with their type as label and confidence 1).
pub fn objects(buffer: &gst::BufferRef) -> Vec<FrameObject> {
    buffer
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .map(|m| {
            let (x, y, width, height) = m.rect();
            let param = m.param(DETECTION_PARAM);
            FrameObject {
                class_id: param
                    .and_then(|p| p.get::<u32>("class-id").ok())
                    .unwrap_or(0),
                label: param
                    .and_then(|p| p.get::<String>("label").ok())
                    .unwrap_or_else(|| m.roi_type().to_owned()),
                confidence: param
                    .and_then(|p| p.get::<f64>("confidence").ok())
                    .unwrap_or(1.0),
                x,
                y,
                width,
                height,
            }
        })
        .collect()
}

fn add_custom(buffer: &mut gst::BufferRef, name: &str, fill: impl FnOnce(&mut gst::StructureRef)) {
    if let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, name) {
        fill(meta.mut_structure());
    }
}

pub fn add_classification(
    buffer: &mut gst::BufferRef,
    class_id: u32,
    label: &str,
    confidence: f64,
) {
    add_custom(buffer, CLASSIFICATION_META, |s| {
        s.set("class-id", class_id);
        s.set("label", label);
        s.set("confidence", confidence);
    });
}

pub fn add_segmentation(
    buffer: &mut gst::BufferRef,
    width: u32,
    height: u32,
    classes: u32,
    mask: Vec<u8>,
) {
    add_custom(buffer, SEGMENTATION_META, |s| {
        s.set("width", width);
        s.set("height", height);
        s.set("classes", classes);
        s.set("mask", glib::Bytes::from_owned(mask));
    });
}

/// One engine output of one frame.
pub struct TensorView<'a> {
    pub name: &'a str,
    /// Full dims, batch included.
    pub dims: Vec<i32>,
    pub data: &'a [f32],
}

pub fn add_tensors(buffer: &mut gst::BufferRef, tensors: &[TensorView]) {
    let list: Vec<glib::SendValue> = tensors
        .iter()
        .map(|t| {
            let bytes: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            let s = gst::Structure::builder("tensor")
                .field("name", t.name)
                .field("dims", gst::Array::new(t.dims.iter().copied()))
                .field("dtype", "float32")
                .field("data", glib::Bytes::from_owned(bytes))
                .build();
            glib::value::ToSendValue::to_send_value(&s)
        })
        .collect();
    add_custom(buffer, TENSOR_META, |s| {
        s.set("tensors", gst::Array::from_values(list));
    });
}

/// Reads [`TENSOR_META`] back: `(name, dims, values)` per tensor.
pub fn tensors(buffer: &gst::BufferRef) -> Vec<(String, Vec<i32>, Vec<f32>)> {
    let Ok(meta) = gst::meta::CustomMeta::from_buffer(buffer, TENSOR_META) else {
        return Vec::new();
    };
    let Ok(list) = meta.structure().get::<gst::Array>("tensors") else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|v| v.get::<gst::Structure>().ok())
        .filter_map(|s| {
            let name = s.get::<String>("name").ok()?;
            let dims = s
                .get::<gst::Array>("dims")
                .ok()?
                .iter()
                .filter_map(|d| d.get::<i32>().ok())
                .collect();
            let bytes = s.get::<glib::Bytes>("data").ok()?;
            let values = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Some((name, dims, values))
        })
        .collect()
}
