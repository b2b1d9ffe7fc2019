//! Real `gst-launch-1.0` processes loading the built plugin (the `.so` cargo built for these tests),
//! the example pipelines in `pipelines/`, and the Python application reading the metadata.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{demo_config, quoted, root};
use gst_video::prelude::*;

/// A private plugin folder holding the freshly built `libgsttaoinfer.so`, a private registry and a
/// private engine cache, so the processes see this build and nothing of the user's.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let exe = std::env::current_exe().expect("test executable path");
        let deps = exe.parent().expect("deps folder");
        let built = [
            deps.join("libgsttaoinfer.so"),
            deps.join("../libgsttaoinfer.so"),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .expect("cargo builds libgsttaoinfer.so next to the tests");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        std::fs::copy(&built, dir.path().join("plugins/libgsttaoinfer.so")).unwrap();
        Env { dir }
    }

    fn plugins(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("GST_PLUGIN_PATH", self.plugins())
            .env("GST_REGISTRY", self.dir.path().join("registry.bin"))
            .env("TAO_ENGINE_CACHE", self.dir.path().join("engines"))
            .env("TAOINFER_PLUGIN_DIR", self.plugins())
            .current_dir(root());
        c
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn launch(env: &Env, pipeline: &str) -> Output {
    let mut c = env.command("timeout");
    c.arg("120").arg("gst-launch-1.0").arg("-m");
    // gst-launch takes the pipeline as separate words; quoting is not needed for these paths.
    c.args(pipeline.split_whitespace());
    c.output().expect("gst-launch-1.0 runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The decoded PNG as (width, height, RGB bytes), read back through GStreamer.
fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let r = common::run(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink",
        quoted(path)
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    let (buffer, caps) = &r.buffers[0];
    let info = gst_video::VideoInfo::from_caps(caps).unwrap();
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &info).unwrap();
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).unwrap();
    let mut rgb = Vec::new();
    for y in 0..info.height() as usize {
        rgb.extend_from_slice(&data[y * stride..y * stride + info.width() as usize * 3]);
    }
    (info.width(), info.height(), rgb)
}

#[test]
fn gst_launch_demo_pipeline_prints_detections_and_writes_a_png() {
    let env = Env::new();
    let png = env.out("ball.png");
    let o = launch(
        &env,
        &format!(
            "videotestsrc pattern=ball num-buffers=5 ! video/x-raw,format=RGB,width=320,height=240 \
             ! taoinfer config-file={} post-messages=true ! taooverlay ! videoconvert ! pngenc \
             ! multifilesink location={}",
            demo_config(),
            png.display()
        ),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let frames = out.matches("(element): taoinfer, frame=").count();
    assert_eq!(frames, 5, "{out}");
    assert!(out.contains("Progress: (engine) built engine"), "{out}");
    assert!(out.contains("summary=(string)\"ball\\ 0."), "{out}");
    // The annotated PNG has the green box.
    let (w, h, rgb) = read_png(&png);
    assert_eq!((w, h), (320, 240));
    let green = rgb.chunks_exact(3).filter(|p| *p == [0, 255, 0]).count();
    assert!(green > 100, "{green} green pixels");

    // The second process finds the engine in the cache.
    let o = launch(
        &env,
        &format!(
            "videotestsrc pattern=ball num-buffers=1 ! video/x-raw,width=320,height=240 \
             ! taoinfer config-file={} ! fakesink",
            demo_config()
        ),
    );
    assert!(o.status.success());
    assert!(
        text(&o).contains("Progress: (engine) loaded cached engine"),
        "{}",
        text(&o)
    );
}

/// A live source with build-policy=background reaches PLAYING (gst-launch waits for progress to
/// complete before it sets PLAYING) and ends.
#[test]
fn gst_launch_live_source_with_background_build() {
    let env = Env::new();
    let o = launch(
        &env,
        &format!(
            "videotestsrc is-live=true pattern=ball num-buffers=15 \
             ! video/x-raw,format=NV12,width=320,height=240,framerate=60/1 \
             ! taoinfer config-file={} build-policy=background post-messages=true ! fakesink",
            demo_config()
        ),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("Got EOS"), "{out}");
    assert!(out.contains("Progress: (engine) built engine"), "{out}");
}

#[test]
fn gst_launch_reports_a_wrong_key() {
    let env = Env::new();
    let o = launch(
        &env,
        &format!(
            "videotestsrc num-buffers=1 ! taoinfer model={} key=wrong-key ! fakesink",
            root().join("samples/ball_detector.etlt").display()
        ),
    );
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("ERROR: from element"), "{out}");
    assert!(
        out.contains("ball_detector.etlt") && out.contains("key"),
        "{out}"
    );
}

#[test]
fn gst_inspect_documents_properties() {
    let env = Env::new();
    let o = env
        .command("gst-inspect-1.0")
        .arg("taoinfer")
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for needle in [
        "batch-size",
        "Unsigned Integer. Range: 1 - 1024 Default: 1",
        "pre-cluster-threshold",
        "Double. Range:               0 -               1 Default:             0.2",
        "engine-path",
        "flags: readable\n",
        "(1): background",
        "config-file",
    ] {
        assert!(out.contains(needle), "gst-inspect lacks `{needle}`:\n{out}");
    }
}

#[test]
fn example_pipeline_script_runs() {
    let env = Env::new();
    let png = env.out("example.png");
    let o = env
        .command("bash")
        .arg("pipelines/ball_png.sh")
        .arg(&png)
        .arg("4")
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let frame_lines: Vec<&str> = out.lines().filter(|l| l.starts_with("frame ")).collect();
    assert_eq!(frame_lines.len(), 4, "{out}");
    assert!(frame_lines[0].starts_with("frame 0: ball 0."), "{out}");
    assert!(frame_lines[0].ends_with("40x40"), "{out}");
    assert!(out.contains("engine: built engine"), "{out}");
    assert!(png.is_file());
}

/// The Python application reads the ROI metas and the tensor meta through GObject introspection.
#[test]
fn python_app_reads_the_metadata() {
    let python = "/usr/bin/python3";
    let has_gi = Command::new(python)
        .args([
            "-c",
            "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstVideo', '1.0'); \
             from gi.repository import Gst, GstVideo; from gi.overrides import Gst as o",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_gi {
        if std::env::var_os("CI").is_some() {
            panic!(
                "python_app_reads_the_metadata: PyGObject with GStreamer overrides is required in CI"
            );
        }
        println!(
            "SKIPPED: python_app_reads_the_metadata: python3-gi / python3-gst-1.0 not installed"
        );
        return;
    }
    let env = Env::new();
    let o = env
        .command(python)
        .args(["pipelines/print_detections.py", "--frames", "3"])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let metas: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("meta: ball (class 0) 0."))
        .collect();
    assert_eq!(metas.len(), 3, "{out}");
    assert!(metas.iter().all(|l| l.ends_with("40x40")), "{out}");
    assert_eq!(
        out.matches("tensors: output_cov/Sigmoid [1, 1, 15, 20]")
            .count(),
        3,
        "{out}"
    );
    assert_eq!(out.matches("  message: frame ").count(), 3, "{out}");
}

/// An unusable default engine cache is not fatal: the engine is built in memory and a warning
/// says why (an explicit engine-cache-dir that cannot be written is an error instead).
#[test]
fn unusable_default_cache_warns_and_runs() {
    let env = Env::new();
    let mut c = env.command("timeout");
    c.env("TAO_ENGINE_CACHE", "/proc/tao-engine-cache")
        .arg("120")
        .arg("gst-launch-1.0")
        .args(
            format!(
                "videotestsrc num-buffers=2 ! video/x-raw,width=320,height=240 ! taoinfer config-file={} ! fakesink",
                demo_config()
            )
            .split_whitespace(),
        );
    let o = c.output().unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("WARNING: from element")
            && out.contains("the engine is not cached")
            && out.contains("/proc/tao-engine-cache"),
        "{out}"
    );
}
