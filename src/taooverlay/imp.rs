//! GObject glue of `taooverlay`.

use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;

use super::draw::{Canvas, class_color};
use crate::meta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "taooverlay",
        gst::DebugColorFlags::empty(),
        Some("Draws region-of-interest boxes"),
    )
});

const DEFAULT_LINE_WIDTH: u32 = 2;
const DEFAULT_TEXT_SCALE: u32 = 2;
const DEFAULT_SHOW_LABELS: bool = true;
const DEFAULT_SHOW_CONFIDENCE: bool = true;

#[derive(Debug, Clone, Copy)]
struct Settings {
    line_width: u32,
    text_scale: u32,
    show_labels: bool,
    show_confidence: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            line_width: DEFAULT_LINE_WIDTH,
            text_scale: DEFAULT_TEXT_SCALE,
            show_labels: DEFAULT_SHOW_LABELS,
            show_confidence: DEFAULT_SHOW_CONFIDENCE,
        }
    }
}

/// Byte layout of the negotiated format.
#[derive(Debug, Clone, Copy)]
struct Layout {
    bytes_per_pixel: usize,
    rgb: [usize; 3],
    alpha: Option<usize>,
}

#[derive(Default)]
pub struct TaoOverlay {
    settings: Mutex<Settings>,
    video: Mutex<Option<(gst_video::VideoInfo, Layout)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn layout(format: gst_video::VideoFormat) -> Option<Layout> {
    use gst_video::VideoFormat as F;
    let l = |bytes_per_pixel, r, g, b, alpha| Layout {
        bytes_per_pixel,
        rgb: [r, g, b],
        alpha,
    };
    Some(match format {
        F::Rgb => l(3, 0, 1, 2, None),
        F::Bgr => l(3, 2, 1, 0, None),
        F::Rgbx => l(4, 0, 1, 2, None),
        F::Bgrx => l(4, 2, 1, 0, None),
        F::Xrgb => l(4, 1, 2, 3, None),
        F::Xbgr => l(4, 3, 2, 1, None),
        F::Rgba => l(4, 0, 1, 2, Some(3)),
        F::Bgra => l(4, 2, 1, 0, Some(3)),
        F::Argb => l(4, 1, 2, 3, Some(0)),
        F::Abgr => l(4, 3, 2, 1, Some(0)),
        _ => return None,
    })
}

#[glib::object_subclass]
impl ObjectSubclass for TaoOverlay {
    const NAME: &'static str = "GstTaoOverlay";
    type Type = super::TaoOverlay;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for TaoOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("line-width")
                    .nick("Line width")
                    .blurb("Box outline thickness in pixels")
                    .minimum(1)
                    .maximum(64)
                    .default_value(DEFAULT_LINE_WIDTH)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("text-scale")
                    .nick("Text scale")
                    .blurb("Label glyph size: 5x7 pixels times this factor")
                    .minimum(1)
                    .maximum(16)
                    .default_value(DEFAULT_TEXT_SCALE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("show-labels")
                    .nick("Show labels")
                    .blurb("Write each object's label above its box")
                    .default_value(DEFAULT_SHOW_LABELS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("show-confidence")
                    .nick("Show confidence")
                    .blurb("Append the confidence to the label")
                    .default_value(DEFAULT_SHOW_CONFIDENCE)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "line-width" => s.line_width = value.get().unwrap_or(s.line_width),
            "text-scale" => s.text_scale = value.get().unwrap_or(s.text_scale),
            "show-labels" => s.show_labels = value.get().unwrap_or(s.show_labels),
            "show-confidence" => s.show_confidence = value.get().unwrap_or(s.show_confidence),
            _ => {}
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "line-width" => s.line_width.to_value(),
            "text-scale" => s.text_scale.to_value(),
            "show-labels" => s.show_labels.to_value(),
            "show-confidence" => s.show_confidence.to_value(),
            _ => None::<String>.to_value(),
        }
    }
}

impl GstObjectImpl for TaoOverlay {}

impl ElementImpl for TaoOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TAO results overlay",
                "Filter/Effect/Video",
                "Draws region-of-interest boxes with their labels and confidences (as attached by taoinfer) onto RGB frames",
                "tao-infer developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            use gst_video::VideoFormat as F;
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list([
                    F::Rgb,
                    F::Bgr,
                    F::Rgbx,
                    F::Bgrx,
                    F::Xrgb,
                    F::Xbgr,
                    F::Rgba,
                    F::Bgra,
                    F::Argb,
                    F::Abgr,
                ])
                .build();
            [
                ("src", gst::PadDirection::Src),
                ("sink", gst::PadDirection::Sink),
            ]
            .into_iter()
            .filter_map(|(name, dir)| {
                gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps).ok()
            })
            .collect()
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for TaoOverlay {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse caps {incaps}"))?;
        let l = layout(info.format())
            .ok_or_else(|| gst::loggable_error!(CAT, "unsupported format in {incaps}"))?;
        *lock(&self.video) = Some((info, l));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.video) = None;
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let objects = meta::objects(buf);
        if objects.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let settings = *lock(&self.settings);
        let Some((info, l)) = lock(&self.video).clone() else {
            return Err(gst::FlowError::NotNegotiated);
        };
        let mut frame =
            gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info).map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("cannot map the frame for writing")
                );
                gst::FlowError::Error
            })?;
        let stride = usize::try_from(frame.plane_stride()[0]).unwrap_or(0);
        let (width, height) = (frame.width() as usize, frame.height() as usize);
        let data = frame.plane_data_mut(0).map_err(|_| gst::FlowError::Error)?;
        let mut canvas = Canvas {
            data,
            width,
            height,
            stride,
            bytes_per_pixel: l.bytes_per_pixel,
            rgb: l.rgb,
            alpha: l.alpha,
        };
        for o in &objects {
            let label = match (settings.show_labels, settings.show_confidence) {
                (false, _) => None,
                (true, true) => Some(format!("{} {:.2}", o.label, o.confidence)),
                (true, false) => Some(o.label.clone()),
            };
            canvas.labelled_box(
                (
                    i64::from(o.x),
                    i64::from(o.y),
                    i64::from(o.width),
                    i64::from(o.height),
                ),
                label.as_deref(),
                i64::from(settings.line_width),
                settings.text_scale as usize,
                class_color(o.class_id),
            );
        }
        gst::trace!(CAT, imp = self, "drew {} object(s)", objects.len());
        Ok(gst::FlowSuccess::Ok)
    }
}
