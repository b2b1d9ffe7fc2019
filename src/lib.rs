//! GStreamer plugin `taoinfer`: the `taoinfer` element runs NVIDIA TAO models (.etlt, .onnx, .uff)
//! on video through engines built for this machine and cached on disk, and `taooverlay` draws what
//! it found.

use gst::glib;

pub mod config;
pub mod meta;
pub mod postprocess;
pub mod preprocess;
pub mod taoinfer;
pub mod taooverlay;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    meta::register();
    taoinfer::register(plugin)?;
    taooverlay::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    taoinfer,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
