//! Cross-frame batching (`batch-size` > 1): frames are held until a batch is full, inferred in one
//! engine run, and every buffer comes out in order with its own results; a partial batch is
//! inferred at EOS, dropped on flush, and the wait is reported in latency queries.

mod common;

use common::{ball_frame, demo_config, objects, quoted, temp_cache};
use gsttaoinfer::meta::FrameObject;

const FRAMES: u64 = 10;
const CAPS: &str = "video/x-raw,format=RGB,width=320,height=240,framerate=30/1";

fn harness(batch: u32, cache: &tempfile::TempDir) -> gst_check::Harness {
    harness_with(batch, "", cache)
}

fn harness_with(batch: u32, extra: &str, cache: &tempfile::TempDir) -> gst_check::Harness {
    common::init();
    let mut h = gst_check::Harness::new_parse(&format!(
        "taoinfer config-file={} engine-cache-dir={} batch-size={batch} {extra}",
        quoted(demo_config()),
        quoted(cache.path())
    ));
    h.set_src_caps_str(CAPS);
    h
}

/// Frame `i`: the ball moves right 20 pixels a frame; pts and offset number the frame.
fn frame(i: u64) -> gst::Buffer {
    let mut b = ball_frame(50.0 + 20.0 * i as f64, 120.0);
    let buf = b.get_mut().unwrap();
    buf.set_pts(gst::ClockTime::from_mseconds(i * 33));
    buf.set_offset(i);
    b
}

/// A flush (start, stop) and a new segment, as a seek does.
fn flush(h: &mut gst_check::Harness) {
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
}

fn drain_output(h: &mut gst_check::Harness) -> Vec<gst::Buffer> {
    std::iter::from_fn(|| h.try_pull()).collect()
}

/// Pushes FRAMES frames then EOS; returns the buffers in output order, checking on the way that
/// they come out a whole batch at a time.
fn run_batched(batch: u32, cache: &tempfile::TempDir) -> Vec<gst::Buffer> {
    let mut h = harness(batch, cache);
    let mut out = Vec::new();
    for i in 0..FRAMES {
        assert_eq!(h.push(frame(i)), Ok(gst::FlowSuccess::Ok));
        let now = drain_output(&mut h);
        let pushed = i + 1;
        if pushed % u64::from(batch) == 0 {
            assert_eq!(now.len(), batch as usize, "a full batch comes out at once");
        } else {
            assert!(now.is_empty(), "frame {i} is held until its batch is full");
        }
        out.extend(now);
    }
    assert!(h.push_event(gst::event::Eos::new()));
    out.extend(drain_output(&mut h));
    out
}

/// Every frame out, in order, with its timestamp and the results a one-frame-at-a-time run gave.
fn assert_all_in_order(out: &[gst::Buffer], reference: &[Vec<FrameObject>], batch: u32) {
    assert_eq!(
        out.len(),
        FRAMES as usize,
        "batch-size={batch}: every buffer out"
    );
    for (i, b) in out.iter().enumerate() {
        assert_eq!(b.offset(), i as u64, "batch-size={batch}: in order");
        assert_eq!(b.pts(), Some(gst::ClockTime::from_mseconds(i as u64 * 33)));
        // The engine computes each image of a batch as it would alone.
        assert_eq!(objects(b), reference[i], "batch-size={batch}, frame {i}");
    }
}

#[test]
fn every_buffer_comes_out_in_order_with_its_results() {
    let cache = temp_cache();
    let reference: Vec<Vec<FrameObject>> = run_batched(1, &cache).iter().map(objects).collect();
    assert_eq!(reference.len(), FRAMES as usize);
    for (i, found) in reference.iter().enumerate() {
        // The demo detector finds the ball where it is.
        let x = 50.0 + 20.0 * i as f64;
        assert!(
            found.iter().any(|o| {
                let cx = f64::from(o.x) + f64::from(o.width) / 2.0;
                (cx - x).abs() < 12.0
            }),
            "frame {i}: {found:?}"
        );
    }
    for batch in [3, 4] {
        let out = run_batched(batch, &cache);
        assert_all_in_order(&out, &reference, batch);
    }
}

/// overlap=true: the engine runs a batch on its own thread while the next one is preprocessed.
/// When a batch leaves depends on the engine's speed; what comes out must not.
#[test]
fn overlap_keeps_every_buffer_in_order_with_its_results() {
    let cache = temp_cache();
    let reference: Vec<Vec<FrameObject>> = run_batched(1, &cache).iter().map(objects).collect();
    for batch in [1, 3, 4] {
        let mut h = harness_with(batch, "overlap=true", &cache);
        let mut out = Vec::new();
        for i in 0..FRAMES {
            assert_eq!(h.push(frame(i)), Ok(gst::FlowSuccess::Ok));
            out.extend(drain_output(&mut h));
            // A batch is out at the latest once the one after it is full.
            let whole_batches = (i + 1) / u64::from(batch);
            assert!(
                out.len() as u64 >= whole_batches.saturating_sub(1) * u64::from(batch),
                "batch-size={batch}: {} out after {} in",
                out.len(),
                i + 1
            );
        }
        assert!(h.push_event(gst::event::Eos::new()));
        out.extend(drain_output(&mut h));
        assert_all_in_order(&out, &reference, batch);
    }
    // The latency query counts the extra batch: 4 frames at 30 per second.
    let mut h = harness_with(4, "overlap=true", &cache);
    h.set_upstream_latency(gst::ClockTime::ZERO);
    assert_eq!(
        h.query_latency(),
        Some(gst::ClockTime::from_nseconds(4_000_000_000 / 30))
    );
}

#[test]
fn overlap_flush_drops_the_running_and_held_batches() {
    let cache = temp_cache();
    let mut h = harness_with(4, "overlap=true", &cache);
    let mut out = Vec::new();
    for i in 0..6 {
        assert_eq!(h.push(frame(i)), Ok(gst::FlowSuccess::Ok));
        out.extend(drain_output(&mut h));
    }
    flush(&mut h);
    out.extend(drain_output(&mut h));
    let before: Vec<u64> = out.iter().map(|b| b.offset()).collect();
    // The first batch may have left before the flush; nothing held or running leaves after it.
    assert!(before.is_empty() || before == [0, 1, 2, 3], "{before:?}");
    for i in 6..11 {
        assert_eq!(h.push(frame(i)), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let after: Vec<u64> = drain_output(&mut h).iter().map(|b| b.offset()).collect();
    assert_eq!(after, [6, 7, 8, 9, 10]);
}

#[test]
fn flush_drops_held_frames_and_batching_goes_on() {
    let cache = temp_cache();
    let mut h = harness(4, &cache);
    for i in 0..2 {
        assert_eq!(h.push(frame(i)), Ok(gst::FlowSuccess::Ok));
    }
    assert!(drain_output(&mut h).is_empty());
    flush(&mut h);
    assert!(drain_output(&mut h).is_empty(), "held frames are dropped");
    for i in 2..6 {
        assert_eq!(h.push(frame(i)), Ok(gst::FlowSuccess::Ok));
    }
    let out = drain_output(&mut h);
    let offsets: Vec<u64> = out.iter().map(|b| b.offset()).collect();
    assert_eq!(offsets, [2, 3, 4, 5]);
    assert!(out.iter().all(|b| !objects(b).is_empty()));
    // EOS with nothing held pushes nothing more.
    assert!(h.push_event(gst::event::Eos::new()));
    assert!(drain_output(&mut h).is_empty());
}

#[test]
fn latency_query_reports_the_batch_wait_for_live_sources() {
    let cache = temp_cache();
    let mut h = harness(4, &cache);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(5));
    // Three frames wait for the fourth at 30 frames per second: 100 ms on top of upstream's 5.
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(105)));
    let mut single = harness(1, &cache);
    single.set_upstream_latency(gst::ClockTime::from_mseconds(5));
    assert_eq!(
        single.query_latency(),
        Some(gst::ClockTime::from_mseconds(5))
    );
}

/// Batching in a real pipeline: a frame count that is not a multiple of the batch all reaches
/// the sink, each frame with the ball found.
#[test]
fn launch_pipeline_with_a_partial_last_batch() {
    let cache = temp_cache();
    let r = common::run(&format!(
        "videotestsrc pattern=ball num-buffers=7 ! video/x-raw,format=NV12,width=320,height=240 \
         ! taoinfer config-file={} engine-cache-dir={} batch-size=4 ! appsink name=sink",
        quoted(demo_config()),
        quoted(cache.path())
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.buffers.len(), 7);
    let pts: Vec<_> = r.buffers.iter().map(|(b, _)| b.pts()).collect();
    let mut sorted = pts.clone();
    sorted.sort();
    assert_eq!(pts, sorted);
    assert!(r.buffers.iter().all(|(b, _)| !objects(b).is_empty()));
}
