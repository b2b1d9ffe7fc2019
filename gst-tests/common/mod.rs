//! Helpers shared by the pipeline tests: plugin registration, fixture lookup, running a pipeline to
//! its end while collecting buffers and bus messages, and measuring the ball in a frame.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use gst::prelude::*;
use gst_video::prelude::*;

pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gsttaoinfer::plugin_register_static().expect("plugin registers");
    });
}

/// The repository root (the plugin package is the workspace root).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$TAO_SHARED_DIR`, else `<root>/../shared`. Absent: prints a SKIPPED line and returns `None`,
/// except under `CI`, where the folder must exist.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TAO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: ../shared not found (required when CI is set)");
    }
    println!("SKIPPED: {test}: ../shared not found");
    None
}

pub fn demo_config() -> String {
    root()
        .join("samples/ball_detector_config.txt")
        .display()
        .to_string()
}

pub const LPD_CONFIG: &str = "fixtures/real-etlt/lpdnet_usa_pruned_v1.0/lpd_us_config.txt";

/// Quotes a path for `gst::parse::launch`.
pub fn quoted(p: impl AsRef<Path>) -> String {
    format!("\"{}\"", p.as_ref().display())
}

/// What a pipeline produced.
pub struct Run {
    pub buffers: Vec<(gst::Buffer, gst::Caps)>,
    pub messages: Vec<gst::Message>,
    /// (domain-matching error, message text, debug text) of the first error.
    pub error: Option<(glib::Error, String)>,
}

impl Run {
    pub fn progress(&self) -> Vec<(gst::ProgressType, String)> {
        self.messages
            .iter()
            .filter_map(|m| match m.view() {
                gst::MessageView::Progress(p) => {
                    let (kind, _, text) = p.get();
                    Some((kind, text.to_owned()))
                }
                _ => None,
            })
            .collect()
    }

    pub fn element_messages(&self, name: &str) -> Vec<gst::Structure> {
        self.messages
            .iter()
            .filter_map(|m| match m.view() {
                gst::MessageView::Element(e) => e
                    .structure()
                    .filter(|s| s.name() == name)
                    .map(|s| s.to_owned()),
                _ => None,
            })
            .collect()
    }

    pub fn warnings(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter_map(|m| match m.view() {
                gst::MessageView::Warning(w) => Some(w.error().to_string()),
                _ => None,
            })
            .collect()
    }
}

use gst::glib;

/// Runs `description` (which may end in `appsink name=sink`) to EOS or error, collecting every
/// buffer reaching the appsink and every bus message.
pub fn run(description: &str) -> Run {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("pipeline `{description}`: {e}"))
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let buffers = Arc::new(Mutex::new(Vec::new()));
    if let Some(sink) = pipeline.by_name("sink") {
        let sink = sink
            .downcast::<gst_app::AppSink>()
            .expect("`sink` is an appsink");
        sink.set_property("sync", false);
        let store = buffers.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let (Some(b), Some(c)) = (sample.buffer_owned(), sample.caps_owned()) {
                        store.lock().unwrap().push((b, c));
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let bus = pipeline.bus().expect("pipeline bus");
    let mut messages = Vec::new();
    let mut error = None;
    // A failing start shows up as an error message; the state change result is not needed.
    let _ = pipeline.set_state(gst::State::Playing);
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(300)) {
        let done = match msg.view() {
            gst::MessageView::Eos(_) => true,
            gst::MessageView::Error(e) => {
                error = Some((
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default(),
                ));
                true
            }
            _ => false,
        };
        messages.push(msg);
        if done {
            break;
        }
    }
    pipeline
        .set_state(gst::State::Null)
        .expect("pipeline stops");
    // Messages posted while stopping.
    while let Some(msg) = bus.pop() {
        messages.push(msg);
    }
    let buffers = std::mem::take(&mut *buffers.lock().unwrap());
    Run {
        buffers,
        messages,
        error,
    }
}

/// Bounding box `(x, y, w, h)` of the bright pixels (first byte of each pixel of plane 0 above 128:
/// R, B, Y or grey, all high on the white ball).
pub fn bright_box(buffer: &gst::Buffer, caps: &gst::Caps) -> Option<(f64, f64, f64, f64)> {
    let info = gst_video::VideoInfo::from_caps(caps).ok()?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &info).ok()?;
    let stride = frame.plane_stride()[0] as usize;
    let bpp = info.format_info().pixel_stride()[0] as usize;
    let data = frame.plane_data(0).ok()?;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..info.height() as usize {
        for x in 0..info.width() as usize {
            if data[y * stride + x * bpp] > 128 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x + 1);
                y1 = y1.max(y + 1);
            }
        }
    }
    (x1 > x0).then(|| (x0 as f64, y0 as f64, (x1 - x0) as f64, (y1 - y0) as f64))
}

/// Objects `taoinfer` attached to a buffer.
pub fn objects(buffer: &gst::Buffer) -> Vec<gsttaoinfer::meta::FrameObject> {
    gsttaoinfer::meta::objects(buffer.as_ref())
}

pub fn temp_cache() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

pub const TIMEOUT: Duration = Duration::from_secs(120);

/// A frame with a white disc of radius 20 at (x, y) on black, 320x240 RGB.
pub fn ball_frame(x: f64, y: f64) -> gst::Buffer {
    let mut data = vec![0u8; 320 * 240 * 3];
    for py in 0..240usize {
        for px in 0..320usize {
            if ((px as f64 + 0.5 - x).powi(2) + (py as f64 + 0.5 - y).powi(2)).sqrt() <= 20.0 {
                data[(py * 320 + px) * 3..(py * 320 + px) * 3 + 3].fill(255);
            }
        }
    }
    gst::Buffer::from_slice(data)
}
