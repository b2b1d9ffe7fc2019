//! 200 rapid NULL <-> PLAYING cycles of a pipeline with `taoinfer` (alternating the block and
//! background build policies): no error, no crash, no thread left behind. Its own test binary, so
//! the thread count is this test's alone.

mod common;

use common::{demo_config, objects, quoted, temp_cache};
use gst::prelude::*;

fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

#[test]
fn two_hundred_rapid_state_cycles() {
    common::init();
    let cache = temp_cache();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc pattern=ball is-live=true ! video/x-raw,format=NV12,width=320,height=240,framerate=100/1 \
         ! taoinfer name=infer config-file={} engine-cache-dir={} ! appsink name=sink sync=false max-buffers=2 drop=true",
        quoted(demo_config()),
        quoted(cache.path())
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let infer = pipeline.by_name("infer").unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let bus = pipeline.bus().unwrap();
    let mut threads_after_warmup = 0;
    let mut with_results = 0;
    for cycle in 0..200 {
        let policy = if cycle % 2 == 0 {
            "block"
        } else {
            "background"
        };
        infer.set_property_from_str("build-policy", policy);
        pipeline.set_state(gst::State::Playing).unwrap();
        if cycle % 20 == 0 {
            // Now and then wait for a frame, so cycles also stop mid-stream.
            let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(30));
            let b = sample.and_then(|s| s.buffer_owned()).expect("frames flow");
            with_results += usize::from(!objects(&b).is_empty());
        }
        pipeline.set_state(gst::State::Null).unwrap();
        while let Some(msg) = bus.pop() {
            if let gst::MessageView::Error(e) = msg.view() {
                panic!("cycle {cycle}: {}", e.error());
            }
        }
        if cycle == 10 {
            threads_after_warmup = thread_count();
        }
    }
    assert!(with_results > 0, "frames carried results");
    let threads = thread_count();
    println!("threads after 10 cycles: {threads_after_warmup}, after 200: {threads}");
    // A leak of one thread per cycle would add ~190.
    assert!(
        threads <= threads_after_warmup + 4,
        "threads grew from {threads_after_warmup} to {threads}"
    );
}
