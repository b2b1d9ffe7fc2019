//! `taooverlay`: draws the region-of-interest metas onto the frame, in the right colour channels of
//! each format, and leaves frames without metas untouched.

mod common;

use common::{demo_config, quoted, run, temp_cache};
use gsttaoinfer::meta::{FrameObject, add_objects};

fn object(x: u32, y: u32, w: u32, h: u32, class_id: u32) -> FrameObject {
    FrameObject {
        class_id,
        label: "car".into(),
        confidence: 0.5,
        x,
        y,
        width: w,
        height: h,
    }
}

/// Pushes one black 64x48 frame of `format` carrying `objects` through taooverlay.
fn overlay(format: &str, bytes_per_pixel: usize, objects: &[FrameObject], props: &str) -> Vec<u8> {
    common::init();
    let mut h = gst_check::Harness::new_parse(&format!("taooverlay {props}"));
    h.set_src_caps_str(&format!(
        "video/x-raw,format={format},width=64,height=48,framerate=30/1"
    ));
    let mut buffer = gst::Buffer::from_slice(vec![0u8; 64 * 48 * bytes_per_pixel]);
    add_objects(buffer.get_mut().unwrap(), objects, 1);
    let out = h.push_and_pull(buffer).expect("a frame comes out");
    out.map_readable().unwrap().as_slice().to_vec()
}

fn pixel(data: &[u8], bpp: usize, x: usize, y: usize) -> &[u8] {
    &data[(y * 64 + x) * bpp..(y * 64 + x + 1) * bpp]
}

#[test]
fn boxes_are_drawn_in_the_class_colour() {
    // Class 0 is green, class 1 red: check channel order in RGB and BGRx.
    let objects = [object(20, 20, 20, 10, 0), object(2, 30, 10, 10, 1)];
    let rgb = overlay("RGB", 3, &objects, "show-labels=false line-width=1");
    assert_eq!(pixel(&rgb, 3, 20, 20), [0, 255, 0], "top-left corner");
    assert_eq!(pixel(&rgb, 3, 39, 29), [0, 255, 0], "bottom-right corner");
    assert_eq!(pixel(&rgb, 3, 30, 25), [0, 0, 0], "inside stays untouched");
    assert_eq!(pixel(&rgb, 3, 19, 20), [0, 0, 0], "outside stays untouched");
    assert_eq!(pixel(&rgb, 3, 2, 30), [255, 64, 64], "class 1 colour");

    let bgrx = overlay("BGRx", 4, &objects, "show-labels=false line-width=1");
    assert_eq!(&pixel(&bgrx, 4, 2, 30)[..3], [64, 64, 255], "BGR order");

    let argb = overlay("ARGB", 4, &objects, "show-labels=false line-width=1");
    assert_eq!(
        pixel(&argb, 4, 2, 30),
        [255, 255, 64, 64],
        "alpha first, opaque"
    );

    // Thicker lines reach further in; labels add a filled tab above the box.
    let thick = overlay("RGB", 3, &objects, "show-labels=false line-width=3");
    assert_eq!(pixel(&thick, 3, 22, 25), [0, 255, 0]);
    let labelled = overlay("RGB", 3, &objects, "text-scale=1");
    let tab_pixels = (8..20)
        .flat_map(|y| (20..40).map(move |x| (x, y)))
        .filter(|&(x, y)| pixel(&labelled, 3, x, y) == [0, 255, 0])
        .count();
    assert!(
        tab_pixels > 50,
        "label tab drawn above the box ({tab_pixels} px)"
    );
    let unlabelled_tab = (8..20)
        .flat_map(|y| (20..40).map(move |x| (x, y)))
        .filter(|&(x, y)| pixel(&thick, 3, x, y) != [0, 0, 0])
        .count();
    assert_eq!(unlabelled_tab, 0);
}

#[test]
fn frames_without_metas_and_boxes_off_the_frame_are_safe() {
    let untouched = overlay("RGBA", 4, &[], "");
    assert!(untouched.iter().all(|&b| b == 0));
    // Boxes reaching past the frame are clipped, not a crash.
    let clipped = overlay("RGB", 3, &[object(60, 40, 500, 500, 2)], "line-width=8");
    assert_eq!(pixel(&clipped, 3, 63, 47), [64, 160, 255]);
}

#[test]
fn taoinfer_results_are_drawn_around_the_ball() {
    let cache = temp_cache();
    let r = run(&format!(
        "videotestsrc pattern=ball num-buffers=3 ! video/x-raw,format=RGB,width=320,height=240 \
         ! taoinfer config-file={} engine-cache-dir={} ! taooverlay line-width=2 ! appsink name=sink",
        quoted(demo_config()),
        quoted(cache.path())
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    for (buffer, _) in &r.buffers {
        let found = common::objects(buffer);
        assert_eq!(found.len(), 1);
        let o = &found[0];
        let data = buffer.map_readable().unwrap();
        let px = |x: u32, y: u32| {
            let i = ((y * 320 + x) * 3) as usize;
            [data[i], data[i + 1], data[i + 2]]
        };
        // The outline is green on all four sides; the ball inside is still white.
        let (x1, y1) = (o.x + o.width - 1, o.y + o.height - 1);
        for (x, y) in [(o.x, o.y + 5), (x1, o.y + 5), (o.x + 5, y1), (o.x + 5, o.y)] {
            assert_eq!(px(x, y), [0, 255, 0], "outline at ({x}, {y}) of {o:?}");
        }
        let centre = px(o.x + o.width / 2, o.y + o.height / 2);
        assert!(centre.iter().all(|&c| c > 200), "ball centre {centre:?}");
    }
}
