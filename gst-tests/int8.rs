//! INT8 in `taoinfer`: live calibration on the frames flowing through (FP32 meanwhile, then the
//! INT8 engine swapped in mid-stream with every buffer accounted for), the table written and used
//! by the next start, tables given by property, cancellation and bad tables.

mod common;

use common::{bright_box, demo_config, objects, quoted, run, temp_cache};
use tao_engine::calibration::CalibrationCache;

fn calibrating_pipeline(frames: u32, extra: &str, cache: &std::path::Path) -> String {
    format!(
        "videotestsrc pattern=ball num-buffers={frames} ! video/x-raw,format=RGB,width=320,height=240 \
         ! taoinfer config-file={} engine-cache-dir={} precision=int8 post-messages=true {extra} \
         ! appsink name=sink",
        quoted(demo_config()),
        quoted(cache)
    )
}

fn stage_messages(r: &common::Run) -> Vec<gst::Structure> {
    r.element_messages("taoinfer-calibration")
}

#[test]
fn live_calibration_swaps_in_int8_mid_stream() {
    let cache = temp_cache();
    let total = 200;
    let r = run(&calibrating_pipeline(
        total,
        "calibration-frames=30",
        cache.path(),
    ));
    assert!(r.error.is_none(), "{:?}", r.error);

    // FP32 first, saying why.
    let done: Vec<String> = r
        .progress()
        .into_iter()
        .filter(|(k, _)| *k == gst::ProgressType::Complete)
        .map(|(_, t)| t)
        .collect();
    assert!(
        done[0].contains("precision fp32 until INT8 calibration on the first 30 frames"),
        "{}",
        done[0]
    );
    let fp32_plan = done[0].split(['(', ')']).nth(1).unwrap().to_owned();

    let stages = stage_messages(&r);
    let names: Vec<String> = stages
        .iter()
        .map(|s| s.get::<String>("stage").unwrap())
        .collect();
    assert_eq!(names, ["collecting", "calibrating", "ready"], "{stages:?}");
    assert_eq!(stages[0].get::<u32>("frames").unwrap(), 30);
    assert_eq!(stages[0].get::<u32>("held-back").unwrap(), 3);
    let ready = &stages[2];
    let swapped_at: u64 = ready.get("frame").unwrap();
    let collected_at: u64 = stages[1].get("frame").unwrap();
    // 33 frames are needed; the swap comes after them and before the stream ends.
    assert!(
        collected_at >= 32 && swapped_at > collected_at,
        "{stages:?}"
    );
    assert!(swapped_at < u64::from(total), "{stages:?}");
    assert_eq!(ready.get::<u32>("frames").unwrap(), 30);
    assert_eq!(ready.get::<u32>("held-back").unwrap(), 3);
    let agreement: f64 = ready.get("agreement").unwrap();
    assert_eq!(
        ready.get::<u32>("fp32-objects").unwrap(),
        3,
        "a ball per held-back frame"
    );
    assert!(agreement >= 0.99, "{ready:?}");
    let int8_plan: String = ready.get("engine").unwrap();
    assert_ne!(int8_plan, fp32_plan);
    assert!(std::path::Path::new(&int8_plan).is_file());
    let table: String = ready.get("table").unwrap();
    assert!(
        table.starts_with(&cache.path().display().to_string()),
        "{table}"
    );
    let text = std::fs::read_to_string(&table).unwrap();
    let parsed = CalibrationCache::parse(&text).expect("a TensorRT-format table");
    assert!(text.starts_with("TRT-"), "{text}");
    assert!(parsed.amax("input_1").is_some(), "{text}");

    // Every buffer came out, each was inferred (no frame skipped or stalled out), and the ball is
    // found on both sides of the swap.
    assert_eq!(r.buffers.len(), total as usize);
    let frames: Vec<u64> = r
        .element_messages("taoinfer")
        .iter()
        .map(|s| s.get("frame").unwrap())
        .collect();
    assert_eq!(frames, (0..u64::from(total)).collect::<Vec<_>>());
    for (i, (buffer, caps)) in r.buffers.iter().enumerate() {
        let (bx, by, bw, bh) = bright_box(buffer, caps).unwrap();
        let found = objects(buffer);
        assert_eq!(found.len(), 1, "frame {i}: {found:?}");
        let o = &found[0];
        let (cx, cy) = (
            o.x as f64 + o.width as f64 / 2.0,
            o.y as f64 + o.height as f64 / 2.0,
        );
        assert!(
            (cx - (bx + bw / 2.0)).abs() <= 3.0 && (cy - (by + bh / 2.0)).abs() <= 3.0,
            "frame {i} ({}): {o:?} vs ball ({bx}, {by}, {bw}, {bh})",
            if (i as u64) < swapped_at {
                "fp32"
            } else {
                "int8"
            }
        );
    }

    // The next start loads the INT8 engine directly: no calibration, no build.
    let again = run(&calibrating_pipeline(
        3,
        "calibration-frames=30",
        cache.path(),
    ));
    assert!(again.error.is_none(), "{:?}", again.error);
    assert!(stage_messages(&again).is_empty());
    let done: Vec<String> = again
        .progress()
        .into_iter()
        .filter(|(k, _)| *k == gst::ProgressType::Complete)
        .map(|(_, t)| t)
        .collect();
    assert!(
        done[0].starts_with(&format!("loaded cached engine ({int8_plan})")),
        "{}",
        done[0]
    );
    assert!(done[0].contains(&format!("precision int8, calibration table {table}")));
}

#[test]
fn calibration_cache_property_is_written_then_used() {
    let cache = temp_cache();
    let table = cache.path().join("tables/ball.cache");
    let extra = format!(
        "calibration-frames=10 calibration-algorithm=minmax calibration-cache={}",
        quoted(&table)
    );
    let r = run(&calibrating_pipeline(60, &extra, cache.path()));
    assert!(r.error.is_none(), "{:?}", r.error);
    let stages = stage_messages(&r);
    assert_eq!(
        stages.last().map(|s| s.get::<String>("stage").unwrap()),
        Some("ready".to_owned()),
        "{stages:?}"
    );
    let text = std::fs::read_to_string(&table).expect("table written where asked");
    assert!(
        text.starts_with("TRT-") && text.lines().next().unwrap().ends_with("MinMaxCalibration")
    );

    let again = run(&calibrating_pipeline(2, &extra, cache.path()));
    assert!(stage_messages(&again).is_empty());
    assert!(
        again
            .progress()
            .iter()
            .any(|(_, t)| t == &format!("reading calibration table {}", table.display()))
    );
}

#[test]
fn stopping_before_calibration_ends_cleanly() {
    let cache = temp_cache();
    // 1000 frames are wanted, 40 come: the stream ends in FP32 and the worker is cancelled.
    let r = run(&calibrating_pipeline(
        40,
        "calibration-frames=1000",
        cache.path(),
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.buffers.len(), 40);
    let names: Vec<String> = stage_messages(&r)
        .iter()
        .map(|s| s.get::<String>("stage").unwrap())
        .collect();
    assert_eq!(names, ["collecting"]);
    assert!(
        !cache.path().join("calibration").exists() || {
            std::fs::read_dir(cache.path().join("calibration"))
                .unwrap()
                .filter_map(|e| e.ok())
                .all(|e| !e.file_name().to_string_lossy().ends_with(".cache"))
        }
    );
}

#[test]
fn a_broken_table_is_named() {
    let cache = temp_cache();
    let table = cache.path().join("broken.cache");
    std::fs::write(&table, "not a calibration table\nx: y\n").unwrap();
    let r = run(&calibrating_pipeline(
        1,
        &format!("calibration-cache={}", quoted(&table)),
        cache.path(),
    ));
    let (e, _) = r.error.expect("a broken table fails the start");
    assert!(e.matches(gst::StreamError::Format), "{e}");
    assert!(e.to_string().contains("broken.cache"), "{e}");
}

/// Live calibration with batches running on the engine thread (batch-size=4, overlap=true): the
/// swap to INT8 still happens mid-stream and every frame comes out inferred, in order.
#[test]
fn live_calibration_with_overlapped_batches() {
    let cache = temp_cache();
    let total = 150;
    let r = run(&calibrating_pipeline(
        total,
        "calibration-frames=20 batch-size=4 overlap=true",
        cache.path(),
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    let names: Vec<String> = stage_messages(&r)
        .iter()
        .map(|s| s.get::<String>("stage").unwrap())
        .collect();
    assert_eq!(names, ["collecting", "calibrating", "ready"]);
    assert_eq!(r.buffers.len(), total as usize);
    let frames: Vec<u64> = r
        .element_messages("taoinfer")
        .iter()
        .map(|s| s.get("frame").unwrap())
        .collect();
    assert_eq!(frames, (0..u64::from(total)).collect::<Vec<_>>());
    let pts: Vec<_> = r.buffers.iter().map(|(b, _)| b.pts()).collect();
    assert!(pts.windows(2).all(|w| w[0] < w[1]), "in order");
    for (i, (buffer, _)) in r.buffers.iter().enumerate() {
        assert_eq!(objects(buffer).len(), 1, "frame {i}");
    }
}
