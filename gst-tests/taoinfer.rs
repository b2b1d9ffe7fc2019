//! `taoinfer` in real pipelines and harnesses with the demo ball detector shipped in `samples/`:
//! properties, caps, detections where the ball is, metadata, the engine cache across starts, the
//! background build policy, error paths and rapid state cycles.

mod common;

use std::fs::File;
use std::time::{Duration, Instant};

use common::{ball_frame, bright_box, demo_config, objects, quoted, run, temp_cache};
use gst::prelude::*;

fn ball_pipeline(format: &str, size: (u32, u32), frames: u32, extra: &str, cache: &str) -> String {
    format!(
        "videotestsrc pattern=ball num-buffers={frames} ! video/x-raw,format={format},width={},height={} \
         ! taoinfer config-file={} engine-cache-dir={cache} {extra} ! appsink name=sink",
        size.0,
        size.1,
        quoted(demo_config())
    )
}

#[test]
fn properties_round_trip_with_documented_defaults() {
    common::init();
    let e = gst::ElementFactory::make("taoinfer").build().unwrap();
    // A fresh element reports every documented default.
    for pspec in e.list_properties() {
        if !pspec.flags().contains(glib::ParamFlags::READABLE) {
            continue;
        }
        let name = pspec.name();
        if matches!(name, "name" | "parent" | "qos") {
            continue;
        }
        let value = e.property_value(name);
        let default = pspec.default_value();
        assert_eq!(
            value.serialize().ok().map(|s| s.to_string()),
            default.serialize().ok().map(|s| s.to_string()),
            "default of {name}"
        );
    }
    let cases = [
        ("model", "/models/peoplenet.etlt"),
        ("key-file", "/keys/peoplenet.key"),
        ("config-file", "/configs/pgie.txt"),
        ("input-dims", "3;544;960"),
        ("input-order", "nhwc"),
        ("output-blobs", "output_cov/Sigmoid;output_bbox/BiasAdd"),
        ("precision", "fp16"),
        ("batch-size", "4"),
        ("workspace", "2048"),
        (
            "optimization-profiles",
            "input_1:1x3x544x960,4x3x544x960,8x3x544x960",
        ),
        ("backend", "cpu"),
        ("device-id", "1"),
        ("threads", "3"),
        ("engine-cache-dir", "/var/cache/tao"),
        ("calibration-cache", "/tmp/cal.bin"),
        ("calibration-frames", "250"),
        ("calibration-algorithm", "percentile"),
        ("build-policy", "background"),
        ("net-scale-factor", "0.25"),
        ("offsets", "1;2;3"),
        ("std", "0.5;0.5;0.5"),
        ("model-color-format", "gray"),
        ("maintain-aspect-ratio", "true"),
        ("symmetric-padding", "true"),
        ("scaling-filter", "bilinear"),
        ("interval", "5"),
        ("network-type", "other"),
        ("num-classes", "3"),
        ("labels-file", "/labels.txt"),
        ("pre-cluster-threshold", "0.375"),
        ("post-cluster-threshold", "0.125"),
        ("nms-iou-threshold", "0.625"),
        ("top-k", "7"),
        ("cluster-mode", "dbscan-nms"),
        ("dbscan-eps", "0.25"),
        ("dbscan-min-boxes", "3"),
        ("box-norm", "40"),
        ("classifier-threshold", "0.75"),
        ("segmentation-threshold", "0.25"),
        ("output-tensor-meta", "true"),
        ("post-messages", "true"),
    ];
    for (name, text) in cases {
        e.set_property_from_str(name, text);
        let value = e.property_value(name);
        let back = if value.type_() == String::static_type() {
            value.get::<String>().unwrap()
        } else {
            value.serialize().unwrap().to_string()
        };
        if value.type_() == f64::static_type() {
            assert_eq!(
                back.parse::<f64>().unwrap(),
                text.parse::<f64>().unwrap(),
                "{name}"
            );
        } else {
            assert_eq!(back, text, "{name}");
        }
    }
    // The key is write-only (pipeline dumps show readable properties); engine-path is read-only.
    let key = e.find_property("key").unwrap();
    assert!(!key.flags().contains(glib::ParamFlags::READABLE));
    let path = e.find_property("engine-path").unwrap();
    assert!(!path.flags().contains(glib::ParamFlags::WRITABLE));
    // Ranges are declared.
    let batch = e
        .find_property("batch-size")
        .unwrap()
        .downcast::<glib::ParamSpecUInt>()
        .unwrap();
    assert_eq!((batch.minimum(), batch.maximum()), (1, 1024));
    let thr = e
        .find_property("pre-cluster-threshold")
        .unwrap()
        .downcast::<glib::ParamSpecDouble>()
        .unwrap();
    assert_eq!((thr.minimum(), thr.maximum()), (0.0, 1.0));
}

#[test]
fn caps_accept_the_listed_formats_and_refuse_others() {
    common::init();
    let e = gst::ElementFactory::make("taoinfer").build().unwrap();
    let sink = e.static_pad("sink").unwrap();
    for format in [
        "RGB", "BGR", "RGBA", "BGRA", "RGBx", "BGRx", "GRAY8", "NV12", "I420",
    ] {
        let caps: gst::Caps =
            format!("video/x-raw,format={format},width=1283,height=721,framerate=30/1")
                .parse()
                .unwrap();
        assert!(sink.query_accept_caps(&caps), "{format} accepted");
    }
    for refused in [
        "video/x-raw,format=YUY2,width=320,height=240",
        "video/x-raw,format=RGB16,width=320,height=240",
        "audio/x-raw,format=S16LE,rate=48000,channels=2",
    ] {
        let caps: gst::Caps = refused.parse().unwrap();
        assert!(!sink.query_accept_caps(&caps), "{refused} refused");
    }
    // A pipeline cannot even be linked with a refused format.
    let cache = temp_cache();
    let err = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format=YUY2,width=320,height=240 ! taoinfer config-file={} engine-cache-dir={} ! fakesink",
        quoted(demo_config()),
        quoted(cache.path())
    ))
    .expect_err("YUY2 cannot link");
    assert!(err.to_string().contains("can't handle caps"), "{err}");
}

/// Every accepted format: the detection lands on the ball measured from the frame's own pixels.
#[test]
fn demo_model_finds_the_ball_in_every_format() {
    let cache = temp_cache();
    let cache_path = quoted(cache.path());
    for format in [
        "RGB", "BGR", "RGBA", "BGRA", "RGBx", "BGRx", "GRAY8", "NV12", "I420",
    ] {
        let r = run(&ball_pipeline(format, (320, 240), 40, "", &cache_path));
        assert!(r.error.is_none(), "{format}: {:?}", r.error);
        assert_eq!(r.buffers.len(), 40, "{format}: every buffer comes out");
        for (i, (buffer, caps)) in r.buffers.iter().enumerate() {
            let (bx, by, bw, bh) = bright_box(buffer, caps).expect("the ball is visible");
            let found = objects(buffer);
            assert_eq!(
                found.len(),
                1,
                "{format} frame {i}: one ball, got {found:?}"
            );
            let o = &found[0];
            assert_eq!(o.label, "ball");
            assert!(o.confidence > 0.5, "{format} frame {i}: {o:?}");
            let (cx, cy) = (
                o.x as f64 + o.width as f64 / 2.0,
                o.y as f64 + o.height as f64 / 2.0,
            );
            let (tx, ty) = (bx + bw / 2.0, by + bh / 2.0);
            assert!(
                (cx - tx).abs() <= 2.0 && (cy - ty).abs() <= 2.0,
                "{format} frame {i}: box centre ({cx}, {cy}) vs ball centre ({tx}, {ty})"
            );
            assert!(
                (o.width as f64 - bw).abs() <= 4.0 && (o.height as f64 - bh).abs() <= 4.0,
                "{format} frame {i}: box {}x{} vs ball {bw}x{bh}",
                o.width,
                o.height
            );
        }
    }
}

/// Frames of another size are scaled to the network input and boxes mapped back to the frame.
#[test]
fn boxes_map_back_to_frames_of_any_size() {
    let cache = temp_cache();
    for (size, extra) in [
        ((640, 480), "scaling-filter=bilinear"),
        ((640, 480), ""),
        ((321, 241), "maintain-aspect-ratio=true"),
    ] {
        let r = run(&ball_pipeline(
            "RGB",
            size,
            10,
            extra,
            &quoted(cache.path()),
        ));
        assert!(r.error.is_none(), "{size:?}: {:?}", r.error);
        assert_eq!(r.buffers.len(), 10);
        for (buffer, caps) in &r.buffers {
            let (bx, by, bw, bh) = bright_box(buffer, caps).unwrap();
            let found = objects(buffer);
            // The ball keeps its 20 px radius in the frame: at 640x480 it is half the size the
            // model expects, so coverage is weaker but the centre must still be right.
            if size == (640, 480) && found.is_empty() {
                continue;
            }
            assert_eq!(found.len(), 1, "{size:?}: {found:?}");
            let o = &found[0];
            let (cx, cy) = (
                o.x as f64 + o.width as f64 / 2.0,
                o.y as f64 + o.height as f64 / 2.0,
            );
            let tolerance = if size == (640, 480) { 5.0 } else { 3.0 };
            assert!(
                (cx - (bx + bw / 2.0)).abs() <= tolerance
                    && (cy - (by + bh / 2.0)).abs() <= tolerance,
                "{size:?} {extra}: box {o:?} vs ball ({bx}, {by}, {bw}, {bh})"
            );
        }
    }
}

#[test]
fn pixels_pass_through_unchanged() {
    common::init();
    let cache = temp_cache();
    let mut h = gst_check::Harness::new_parse(&format!(
        "taoinfer config-file={} engine-cache-dir={}",
        quoted(demo_config()),
        quoted(cache.path())
    ));
    h.set_src_caps_str("video/x-raw,format=RGB,width=320,height=240,framerate=30/1");
    // A white disc of radius 20 at (100, 80) on black.
    let mut data = vec![0u8; 320 * 240 * 3];
    for y in 0..240usize {
        for x in 0..320usize {
            let d = ((x as f64 + 0.5 - 100.0).powi(2) + (y as f64 + 0.5 - 80.0).powi(2)).sqrt();
            if d <= 20.0 {
                data[(y * 320 + x) * 3..(y * 320 + x) * 3 + 3].fill(255);
            }
        }
    }
    let mut buffer = gst::Buffer::from_slice(data.clone());
    buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    let out = h.push_and_pull(buffer).expect("a buffer comes out");
    assert_eq!(out.map_readable().unwrap().as_slice(), &data[..]);
    let found = objects(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    let o = &found[0];
    assert_eq!((o.x, o.y, o.width, o.height), (80, 60, 40, 40), "{o:?}");
}

#[test]
fn interval_tensor_meta_and_messages() {
    let cache = temp_cache();
    let r = run(&ball_pipeline(
        "RGB",
        (320, 240),
        9,
        "interval=2 output-tensor-meta=true post-messages=true",
        &quoted(cache.path()),
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.buffers.len(), 9);
    for (i, (buffer, _)) in r.buffers.iter().enumerate() {
        let inferred = i % 3 == 0;
        assert_eq!(!objects(buffer).is_empty(), inferred, "frame {i}");
        let tensors = gsttaoinfer::meta::tensors(buffer.as_ref());
        if !inferred {
            assert!(tensors.is_empty());
            continue;
        }
        assert_eq!(tensors.len(), 2, "frame {i}");
        assert_eq!(tensors[0].0, "output_cov/Sigmoid");
        assert_eq!(tensors[0].1, [1, 1, 15, 20]);
        assert_eq!(tensors[1].0, "output_bbox/BiasAdd");
        assert_eq!(tensors[1].1, [1, 4, 15, 20]);
        assert_eq!(tensors[1].2.len(), 4 * 15 * 20);
        // The coverage peak is the detection's confidence.
        let peak = tensors[0].2.iter().cloned().fold(0f32, f32::max);
        let o = &objects(buffer)[0];
        assert!(
            (f64::from(peak) - o.confidence).abs() < 1e-6,
            "{peak} vs {o:?}"
        );
    }
    let messages = r.element_messages("taoinfer");
    let frames: Vec<u64> = messages.iter().map(|s| s.get("frame").unwrap()).collect();
    assert_eq!(frames, [0, 3, 6]);
    for s in &messages {
        assert_eq!(s.get::<u32>("count").unwrap(), 1);
        let summary: String = s.get("summary").unwrap();
        assert!(
            summary.starts_with("ball ") && summary.ends_with("40x40"),
            "{summary}"
        );
        let objects = s.get::<gst::Array>("objects").unwrap();
        let first = objects.as_slice()[0].get::<gst::Structure>().unwrap();
        assert_eq!(first.get::<String>("label").unwrap(), "ball");
        assert_eq!(first.get::<u32>("width").unwrap(), 40);
    }
}

#[test]
fn network_type_other_attaches_raw_tensors_only() {
    let cache = temp_cache();
    let r = run(&ball_pipeline(
        "NV12",
        (320, 240),
        3,
        "network-type=other",
        &quoted(cache.path()),
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    for (buffer, _) in &r.buffers {
        assert!(objects(buffer).is_empty());
        assert_eq!(gsttaoinfer::meta::tensors(buffer.as_ref()).len(), 2);
    }
}

fn completions(r: &common::Run) -> Vec<String> {
    r.progress()
        .into_iter()
        .filter(|(k, _)| *k == gst::ProgressType::Complete)
        .map(|(_, t)| t)
        .collect()
}

#[test]
fn second_start_loads_the_engine_from_the_cache() {
    let cache = temp_cache();
    let description = ball_pipeline("RGB", (320, 240), 2, "", &quoted(cache.path()));
    let first = run(&description);
    assert!(first.error.is_none(), "{:?}", first.error);
    let progress = first.progress();
    assert_eq!(
        progress.first().map(|p| p.0),
        Some(gst::ProgressType::Start)
    );
    let done = completions(&first);
    assert_eq!(done.len(), 1, "{progress:?}");
    assert!(done[0].starts_with("built engine ("), "{}", done[0]);
    assert!(done[0].contains("no cached engine"), "{}", done[0]);

    let second = run(&description);
    assert!(second.error.is_none(), "{:?}", second.error);
    let done = completions(&second);
    assert_eq!(done.len(), 1);
    assert!(done[0].starts_with("loaded cached engine ("), "{}", done[0]);
    let plans: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "plan"))
        .collect();
    assert_eq!(plans.len(), 1, "one plan in the cache");
    assert!(done[0].contains(&plans[0].path().display().to_string()));
    // Same detections both times.
    assert_eq!(objects(&first.buffers[1].0), objects(&second.buffers[1].0));

    // A changed build option (batch size) is a different engine: built, not loaded.
    let third = run(&ball_pipeline(
        "RGB",
        (320, 240),
        1,
        "batch-size=2",
        &quoted(cache.path()),
    ));
    assert!(completions(&third)[0].starts_with("built engine"));
}

/// `backend=auto` says what it chose and why, in the log's progress messages and in the summary of
/// the ready engine; on a machine without a GPU that is the CPU with the probe's reason.
#[test]
fn auto_backend_says_what_it_chose() {
    let cache = temp_cache();
    let r = run(&ball_pipeline(
        "RGB",
        (320, 240),
        1,
        "backend=auto",
        &quoted(cache.path()),
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    let expected = tao_backends::choose(&tao_backends::Request {
        choice: tao_backends::BackendChoice::Auto,
        device_id: 0,
        precision: tao_engine::backend::Precision::Fp32,
        calibration: None,
    })
    .unwrap();
    let note = expected.note.expect("auto always explains itself");
    let progress = r.progress();
    assert!(
        progress
            .iter()
            .any(|(k, t)| *k == gst::ProgressType::Continue && *t == note),
        "{progress:?}"
    );
    let done = completions(&r);
    assert!(
        done[0].contains(&format!("backend {}", expected.backend.name()))
            && done[0].contains(&note),
        "{}",
        done[0]
    );
    if expected.backend.name() == "cpu" {
        assert!(
            note.contains("no GPU") || note.contains("does not build"),
            "{note}"
        );
    }

    // backend=cpu takes the CPU without a note.
    let r = run(&ball_pipeline(
        "RGB",
        (320, 240),
        1,
        "backend=cpu",
        &quoted(cache.path()),
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    let done = completions(&r);
    assert!(
        done[0].contains("backend cpu") && !done[0].contains("auto:"),
        "{}",
        done[0]
    );
}

#[test]
fn engine_path_names_the_plan_in_use() {
    common::init();
    let cache = temp_cache();
    let pipeline = gst::parse::launch(&ball_pipeline(
        "RGB",
        (320, 240),
        1,
        "name=infer",
        &quoted(cache.path()),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let infer = pipeline.by_name("infer").unwrap();
    assert_eq!(infer.property::<Option<String>>("engine-path"), None);
    pipeline.set_state(gst::State::Paused).unwrap();
    let path = infer
        .property::<Option<String>>("engine-path")
        .expect("set once started");
    assert!(
        path.starts_with(&cache.path().display().to_string()),
        "{path}"
    );
    assert!(std::path::Path::new(&path).is_file());
    pipeline.set_state(gst::State::Null).unwrap();
}

/// Error: the pipeline fails with an element error whose text names the cause.
fn start_error(props: &str) -> (glib::Error, String) {
    let r = run(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,width=320,height=240 ! taoinfer {props} ! fakesink"
    ));
    let (err, debug) = r
        .error
        .clone()
        .unwrap_or_else(|| panic!("`{props}` should fail"));
    // The element also says so through its progress messages.
    assert!(
        r.progress()
            .iter()
            .any(|(k, t)| *k == gst::ProgressType::Error && t == &err.to_string()),
        "{:?}",
        r.progress()
    );
    (err, debug)
}

use gst::glib;

#[test]
fn errors_name_their_cause() {
    let cache = temp_cache();
    let c = quoted(cache.path());
    let demo = quoted(common::root().join("samples/ball_detector.etlt"));

    let (e, _) = start_error(&format!(
        "model=/no/such/model.etlt key=k engine-cache-dir={c}"
    ));
    assert!(e.matches(gst::ResourceError::NotFound), "{e}");
    assert!(e.to_string().contains("/no/such/model.etlt"), "{e}");

    let (e, _) = start_error(&format!(
        "model={demo} key=not-the-key engine-cache-dir={c}"
    ));
    assert!(e.matches(gst::StreamError::Decrypt), "{e}");
    assert!(e.to_string().contains("key"), "{e}");

    let (e, _) = start_error(&format!("model={demo} engine-cache-dir={c}"));
    assert!(e.to_string().contains("key"), "{e}");

    let (e, _) = start_error(&format!(
        "config-file={} input-dims=3;100;100 engine-cache-dir={c}",
        quoted(demo_config())
    ));
    assert!(e.matches(gst::LibraryError::Settings), "{e}");
    assert!(e.to_string().contains("input_1"), "{e}");

    let (e, _) = start_error(&format!(
        "config-file={} output-blobs=no_such_tensor engine-cache-dir={c}",
        quoted(demo_config())
    ));
    assert!(e.to_string().contains("no_such_tensor"), "{e}");

    let (e, _) = start_error(&format!(
        "config-file={} offsets=1;x;3 engine-cache-dir={c}",
        quoted(demo_config())
    ));
    assert!(
        e.to_string().contains("offsets") && e.to_string().contains("`x`"),
        "{e}"
    );

    let (e, _) = start_error(&format!(
        "config-file={} num-classes=4 engine-cache-dir={c}",
        quoted(demo_config())
    ));
    assert!(e.to_string().contains("num-classes=4"), "{e}");

    let (e, _) = start_error(&format!(
        "config-file={} model-color-format=gray engine-cache-dir={c}",
        quoted(demo_config())
    ));
    assert!(e.to_string().contains("model-color-format"), "{e}");

    // backend=cuda without a usable GPU (device 7 exists nowhere this project runs).
    let (e, _) = start_error(&format!(
        "config-file={} backend=cuda device-id=7 engine-cache-dir={c}",
        quoted(demo_config())
    ));
    assert!(e.matches(gst::CoreError::NotImplemented), "{e}");
    assert!(
        e.to_string().contains("backend=cuda device-id=7") && e.to_string().contains("no GPU: "),
        "{e}"
    );

    // A cache directory that cannot be created (even by root).
    let (e, _) = start_error(&format!(
        "config-file={} engine-cache-dir=/proc/tao-engine-cache",
        quoted(demo_config())
    ));
    assert!(e.matches(gst::ResourceError::OpenWrite), "{e}");
    assert!(e.to_string().contains("/proc/tao-engine-cache"), "{e}");

    // A broken config file names file and line.
    let dir = temp_cache();
    let bad = dir.path().join("bad_config.txt");
    std::fs::write(&bad, "[property]\nbatch-size=lots\n").unwrap();
    let (e, _) = start_error(&format!("config-file={}", quoted(&bad)));
    assert!(e.to_string().contains("bad_config.txt:2"), "{e}");

    // No model at all.
    let (e, _) = start_error("");
    assert!(e.to_string().contains("no model"), "{e}");
}

/// Minimal protobuf writer for a one-node ONNX model using an op nobody implements.
fn unsupported_op_onnx() -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field_bytes(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
    fn field_int(field: u64, v: u64, out: &mut Vec<u8>) {
        varint(field << 3, out);
        varint(v, out);
    }
    let value_info = |name: &str| {
        let mut shape = Vec::new();
        for d in [1u64, 3, 8, 8] {
            let mut dim = Vec::new();
            field_int(1, d, &mut dim);
            field_bytes(1, &dim, &mut shape);
        }
        let mut tensor = Vec::new();
        field_int(1, 1, &mut tensor); // FLOAT
        field_bytes(2, &shape, &mut tensor);
        let mut ty = Vec::new();
        field_bytes(1, &tensor, &mut ty);
        let mut vi = Vec::new();
        field_bytes(1, name.as_bytes(), &mut vi);
        field_bytes(2, &ty, &mut vi);
        vi
    };
    let mut node = Vec::new();
    field_bytes(1, b"x", &mut node);
    field_bytes(2, b"y", &mut node);
    field_bytes(3, b"mystery", &mut node);
    field_bytes(4, b"FluxCapacitor", &mut node);
    let mut graph = Vec::new();
    field_bytes(1, &node, &mut graph);
    field_bytes(2, b"g", &mut graph);
    field_bytes(11, &value_info("x"), &mut graph);
    field_bytes(12, &value_info("y"), &mut graph);
    let mut opset = Vec::new();
    field_bytes(1, b"", &mut opset);
    field_int(2, 13, &mut opset);
    let mut model = Vec::new();
    field_int(1, 8, &mut model);
    field_bytes(7, &graph, &mut model);
    field_bytes(8, &opset, &mut model);
    model
}

#[test]
fn unsupported_op_and_non_model_files_are_named() {
    let dir = temp_cache();
    let onnx = dir.path().join("mystery.onnx");
    std::fs::write(&onnx, unsupported_op_onnx()).unwrap();
    let (e, _) = start_error(&format!(
        "model={} engine-cache-dir={}",
        quoted(&onnx),
        quoted(dir.path())
    ));
    assert!(e.to_string().contains("FluxCapacitor"), "{e}");
    assert!(e.to_string().contains("mystery"), "{e}");

    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "not a model").unwrap();
    let (e, _) = start_error(&format!("model={}", quoted(&junk)));
    assert!(e.matches(gst::StreamError::Format), "{e}");
    assert!(e.to_string().contains("notes.txt"), "{e}");
}

/// build-policy=background: while the engine is being prepared (held back here by holding the
/// cache entry's lock, as a concurrent builder would) buffers pass through untouched; afterwards
/// they carry results. Every buffer comes out.
#[test]
fn background_build_passes_buffers_through_until_ready() {
    common::init();
    // Learn the cache entry of the demo engine.
    let probe = temp_cache();
    let first = run(&ball_pipeline(
        "RGB",
        (320, 240),
        1,
        "",
        &quoted(probe.path()),
    ));
    let plan = completions(&first)[0]
        .split(['(', ')'])
        .nth(1)
        .map(std::path::PathBuf::from)
        .expect("plan path in the progress message");
    let key = plan.file_stem().unwrap().to_string_lossy().into_owned();

    let cache = temp_cache();
    let lock = File::create(cache.path().join(format!("{key}.lock"))).unwrap();
    lock.lock().unwrap();

    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width=320,height=240,framerate=30/1 \
         ! taoinfer config-file={} engine-cache-dir={} build-policy=background \
         ! appsink name=sink sync=false",
        quoted(demo_config()),
        quoted(cache.path())
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut pushed = 0u64;
    let push = |n: &mut u64| {
        let mut b = ball_frame(160.0, 120.0);
        let t = gst::ClockTime::from_mseconds(*n * 33);
        b.get_mut().unwrap().set_pts(t);
        src.push_buffer(b).unwrap();
        *n += 1;
    };
    let pull = || {
        sink.try_pull_sample(gst::ClockTime::from_seconds(60))
            .and_then(|s| s.buffer_owned())
            .expect("every pushed buffer comes out")
    };
    let mut without_results = 0;
    for _ in 0..5 {
        push(&mut pushed);
        let b = pull();
        assert!(objects(&b).is_empty(), "no engine yet: passed through");
        without_results += 1;
    }
    drop(lock);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut with_results = 0;
    while with_results < 3 {
        assert!(Instant::now() < deadline, "engine never became ready");
        push(&mut pushed);
        let b = pull();
        if objects(&b).is_empty() {
            assert_eq!(with_results, 0, "once ready, every frame has results");
            without_results += 1;
            std::thread::sleep(Duration::from_millis(20));
        } else {
            with_results += 1;
        }
    }
    assert_eq!(without_results + with_results, pushed);
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let mut completion = None;
    let mut in_use = None;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        match msg.view() {
            gst::MessageView::Progress(p) if p.get().0 == gst::ProgressType::Complete => {
                completion = Some(p.get().2.to_owned());
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e
                    .structure()
                    .filter(|s| s.name() == "taoinfer-engine-in-use")
                {
                    in_use = Some(s.get::<u64>("passed-through").unwrap());
                }
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let completion = completion.expect("a completion message");
    assert!(completion.starts_with("built engine"), "{completion}");
    assert_eq!(
        in_use,
        Some(without_results),
        "buffers passed through before the swap"
    );
}

/// The classifier and segmentation readers on the demo model's coverage output (read as 300 class
/// scores, or as a one-class score map), checked against the raw tensor attached beside them.
#[test]
fn classifier_and_segmentation_outputs() {
    let cache = temp_cache();
    let r = run(&ball_pipeline(
        "RGB",
        (320, 240),
        3,
        "network-type=classifier classifier-threshold=0.5 output-tensor-meta=true output-blobs=output_cov/Sigmoid",
        &quoted(cache.path()),
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    for (buffer, _) in &r.buffers {
        let tensors = gsttaoinfer::meta::tensors(buffer.as_ref());
        let cov = &tensors[0].2;
        let (best, &peak) = cov
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        let meta = gst::meta::CustomMeta::from_buffer(buffer.as_ref(), "TaoClassification")
            .expect("classification meta");
        let s = meta.structure();
        assert_eq!(s.get::<u32>("class-id").unwrap() as usize, best);
        assert!((s.get::<f64>("confidence").unwrap() - f64::from(peak)).abs() < 1e-6);
        assert_eq!(s.get::<String>("label").unwrap(), format!("class{best}"));
        assert!(objects(buffer).is_empty());
    }

    let r = run(&ball_pipeline(
        "RGB",
        (320, 240),
        2,
        "network-type=segmentation segmentation-threshold=0.5 output-tensor-meta=true output-blobs=output_cov/Sigmoid",
        &quoted(cache.path()),
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    for (buffer, _) in &r.buffers {
        let tensors = gsttaoinfer::meta::tensors(buffer.as_ref());
        let meta = gst::meta::CustomMeta::from_buffer(buffer.as_ref(), "TaoSegmentation")
            .expect("segmentation meta");
        let s = meta.structure();
        assert_eq!(
            (
                s.get::<u32>("width").unwrap(),
                s.get::<u32>("height").unwrap()
            ),
            (20, 15)
        );
        let mask = s.get::<glib::Bytes>("mask").unwrap();
        let expected: Vec<u8> = tensors[0]
            .2
            .iter()
            .map(|&v| if v >= 0.5 { 0 } else { 255 })
            .collect();
        assert_eq!(&mask[..], &expected[..]);
        assert!(expected.contains(&0), "the ball's cells are class 0");
    }
}

/// Input that no network can use is reported once, as a warning message, and the stream goes on.
#[test]
fn suspicious_input_statistics_warn_once() {
    let cache = temp_cache();
    let c = quoted(cache.path());
    let about_input = |r: &common::Run| -> Vec<String> {
        r.warnings()
            .into_iter()
            .filter(|w| w.contains("preprocessed input"))
            .collect()
    };
    // A uniform grey source: every value of the input is the same.
    let r = run(&format!(
        "videotestsrc pattern=solid-color foreground-color=0xff808080 num-buffers=6 \
         ! video/x-raw,format=RGB,width=320,height=240 \
         ! taoinfer config-file={} engine-cache-dir={c} ! appsink name=sink",
        quoted(demo_config())
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.buffers.len(), 6);
    let warned = about_input(&r);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("every value"), "{}", warned[0]);

    // net-scale-factor 255 where the network wants 1/255.
    let r = run(&ball_pipeline(
        "RGB",
        (320, 240),
        4,
        "net-scale-factor=255",
        &c,
    ));
    let warned = about_input(&r);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("net-scale-factor"), "{}", warned[0]);

    // The ball with the config's own scaling: nothing to say.
    let r = run(&ball_pipeline("RGB", (320, 240), 4, "", &c));
    assert!(about_input(&r).is_empty(), "{:?}", r.warnings());
}
