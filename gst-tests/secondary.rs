//! `process-mode=secondary`: a second `taoinfer` classifies each object the first one detected,
//! on the object's region of the frame, and adds the result to that object's meta.

mod common;

use common::{ball_frame, demo_config, objects, quoted, temp_cache};
use gsttaoinfer::meta::{CLASSIFICATION_META, region_classifications};

const CAPS: &str = "video/x-raw,format=RGB,width=320,height=240,framerate=30/1";

/// The demo detector (unique id 1), then the demo model read as a classifier on each object.
fn chain(secondary_props: &str, cache: &tempfile::TempDir) -> gst_check::Harness {
    common::init();
    let c = quoted(cache.path());
    let mut h = gst_check::Harness::new_parse(&format!(
        "taoinfer config-file={cfg} engine-cache-dir={c} gie-unique-id=1 \
         ! taoinfer config-file={cfg} engine-cache-dir={c} network-type=classifier \
           classifier-threshold=0 process-mode=secondary gie-unique-id=2 {secondary_props}",
        cfg = quoted(demo_config())
    ));
    h.set_src_caps_str(CAPS);
    h
}

/// The same model as a primary classifier on a frame that is exactly `rect` of `frame`.
fn classify_crop(
    frame: &gst::Buffer,
    rect: (u32, u32, u32, u32),
    cache: &tempfile::TempDir,
) -> (u32, f64) {
    let (x, y, w, h) = (
        rect.0 as usize,
        rect.1 as usize,
        rect.2 as usize,
        rect.3 as usize,
    );
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w as u32, h as u32)
        .build()
        .unwrap();
    let stride = info.stride()[0] as usize;
    let src = frame.map_readable().unwrap();
    let mut data = vec![0u8; info.size()];
    for row in 0..h {
        let from = (y + row) * 320 * 3 + x * 3;
        data[row * stride..row * stride + w * 3].copy_from_slice(&src[from..from + w * 3]);
    }
    let mut harness = gst_check::Harness::new_parse(&format!(
        "taoinfer config-file={} engine-cache-dir={} network-type=classifier classifier-threshold=0",
        quoted(demo_config()),
        quoted(cache.path())
    ));
    harness.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={w},height={h},framerate=30/1"
    ));
    let out = harness
        .push_and_pull(gst::Buffer::from_slice(data))
        .unwrap();
    let meta = gst::meta::CustomMeta::from_buffer(out.as_ref(), CLASSIFICATION_META)
        .expect("a classification");
    let s = meta.structure();
    (s.get("class-id").unwrap(), s.get("confidence").unwrap())
}

#[test]
fn each_detected_object_gets_the_classifier_result_of_its_region() {
    let cache = temp_cache();
    let mut h = chain("operate-on-gie-id=1", &cache);
    for (bx, by) in [(100.0, 80.0), (220.0, 150.0)] {
        let frame = ball_frame(bx, by);
        let out = h.push_and_pull(frame.clone()).unwrap();
        let found = objects(&out);
        assert_eq!(found.len(), 1, "{found:?}");
        let results = region_classifications(out.as_ref());
        assert_eq!(results.len(), 1);
        let (gie, class, _label, confidence) = results[0].clone().expect("classified");
        assert_eq!(gie, 2);
        // Identical to classifying a frame cut to the object's box.
        let o = &found[0];
        let (ref_class, ref_confidence) =
            classify_crop(&frame, (o.x, o.y, o.width, o.height), &cache);
        assert_eq!(class, ref_class, "ball at ({bx}, {by})");
        assert!(
            (confidence - ref_confidence).abs() < 1e-6,
            "{confidence} vs {ref_confidence}"
        );
    }
}

#[test]
fn operate_on_filters_skip_other_objects() {
    let cache = temp_cache();
    for props in ["operate-on-gie-id=7", "operate-on-class-ids=3;4"] {
        let mut h = chain(props, &cache);
        let out = h.push_and_pull(ball_frame(100.0, 80.0)).unwrap();
        assert_eq!(objects(&out).len(), 1);
        assert_eq!(region_classifications(out.as_ref()), [None], "{props}");
    }
    // Class 0 (the ball) is asked for.
    let mut h = chain("operate-on-class-ids=0", &cache);
    let out = h.push_and_pull(ball_frame(100.0, 80.0)).unwrap();
    assert!(region_classifications(out.as_ref())[0].is_some());
}

#[test]
fn secondary_mode_needs_a_classifier() {
    common::init();
    let cache = temp_cache();
    let r = common::run(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,width=320,height=240 \
         ! taoinfer config-file={} engine-cache-dir={} process-mode=secondary ! fakesink",
        quoted(demo_config()),
        quoted(cache.path())
    ));
    let (e, _) = r.error.expect("refused");
    assert!(e.to_string().contains("process-mode=secondary"), "{e}");
}
