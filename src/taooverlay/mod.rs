//! The `taooverlay` element: draws the region-of-interest metas of each frame (boxes, labels and
//! confidences, as `taoinfer` attaches them) onto packed RGB frames, so a person can see the results.

use gst::glib;
use gst::prelude::*;

pub mod draw;
mod imp;

glib::wrapper! {
    pub struct TaoOverlay(ObjectSubclass<imp::TaoOverlay>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "taooverlay",
        gst::Rank::NONE,
        TaoOverlay::static_type(),
    )
}
