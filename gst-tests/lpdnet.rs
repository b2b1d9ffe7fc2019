//! The real LPDNet (`../shared`) through `taoinfer config-file=…/lpd_us_config.txt`, exactly as
//! DeepStream users configure it: plates found on real car photos (decoded by a real pipeline) where
//! the benchmark's ground truth puts them, and on real video.

mod common;

use std::path::Path;

use common::{LPD_CONFIG, objects, quoted, run, shared_dir, temp_cache};

fn iou(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> f64 {
    let w = ((a.0 + a.2).min(b.0 + b.2) - a.0.max(b.0)).max(0.0);
    let h = ((a.1 + a.3).min(b.1 + b.3) - a.1.max(b.1)).max(0.0);
    let inter = w * h;
    inter / (a.2 * a.3 + b.2 * b.3 - inter)
}

/// `name x y w h plate` from an openalpr benchmark annotation.
fn truth(txt: &Path) -> Option<(String, (f64, f64, f64, f64))> {
    let line = std::fs::read_to_string(txt).ok()?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((f.first()?.to_string(), (n(1)?, n(2)?, n(3)?, n(4)?)))
}

#[test]
fn lpdnet_config_finds_plates_on_real_photos() {
    let Some(shared) = shared_dir("lpdnet_config_finds_plates_on_real_photos") else {
        return;
    };
    let config = shared.join(LPD_CONFIG);
    let cars = shared.join("fixtures/media/images/cars");
    let mut annotations: Vec<_> = std::fs::read_dir(&cars)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    annotations.sort();
    assert!(annotations.len() >= 8, "annotated photos present");
    let cache = temp_cache();
    let mut found = 0;
    for (n, txt) in annotations.iter().enumerate() {
        let (file, plate) = truth(txt).expect("annotation parses");
        let r = run(&format!(
            "filesrc location={} ! jpegdec ! videoconvert ! taoinfer config-file={} engine-cache-dir={} \
             ! appsink name=sink",
            quoted(cars.join(&file)),
            quoted(&config),
            quoted(cache.path())
        ));
        assert!(r.error.is_none(), "{file}: {:?}", r.error);
        // The first photo builds the engine; every later one loads it.
        let done: Vec<String> = r
            .progress()
            .into_iter()
            .filter(|(k, _)| *k == gst::ProgressType::Complete)
            .map(|(_, t)| t)
            .collect();
        let expected = if n == 0 {
            "built engine"
        } else {
            "loaded cached engine"
        };
        assert!(done[0].starts_with(expected), "{file}: {}", done[0]);
        // The config asks for INT8 (network-mode=1) with NVIDIA's table (int8-calib-file, found
        // beside the config): the engine is INT8 from that table.
        assert!(
            done[0].contains("precision int8, calibration table")
                && done[0].contains("usa_lpd_cal.bin"),
            "{file}: {}",
            done[0]
        );

        assert_eq!(r.buffers.len(), 1);
        let plates = objects(&r.buffers[0].0);
        let best = plates
            .iter()
            .map(|o| {
                let b = (o.x as f64, o.y as f64, o.width as f64, o.height as f64);
                (iou(b, plate), o)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let hit = best.is_some_and(|(v, _)| v >= 0.5);
        println!(
            "{file}: truth {plate:?}, {} detection(s), best {:?}: {}",
            plates.len(),
            best.map(|(v, o)| (
                format!("IoU {v:.2}"),
                o.x,
                o.y,
                o.width,
                o.height,
                o.confidence
            )),
            if hit { "FOUND" } else { "missed" }
        );
        for o in &plates {
            assert_eq!(o.label, "lpd", "label from the config's labels file");
            // No false positives: whatever is reported is on the plate.
            let b = (o.x as f64, o.y as f64, o.width as f64, o.height as f64);
            assert!(
                iou(b, plate) >= 0.3,
                "{file}: detection {o:?} is not on the plate {plate:?}"
            );
        }
        found += usize::from(hit);
    }
    println!("plates found: {found} / {}", annotations.len());
    // LPDNet is a secondary detector (the config says process-mode=2: it runs on car crops). On
    // whole frames, plates under ~35x20 px at its 640x480 input stay below the config's
    // pre-cluster-threshold (0.3): three such plates are missed here, every larger one is found.
    assert!(
        found * 10 >= annotations.len() * 7,
        "LPDNet found only {found} of {} plates",
        annotations.len()
    );
}

#[test]
fn lpdnet_runs_on_real_video() {
    let Some(shared) = shared_dir("lpdnet_runs_on_real_video") else {
        return;
    };
    // A UK front plate (LS15 EBC) on an approaching car, 1280x720 H.264: the US model fires on it
    // weakly (coverage ~0.3) in some frames only, so the check is that every frame is inferred and
    // what is found is plate-shaped and where the plate is (lower middle of the frame).
    let video = shared.join("fixtures/media/video/license_plate.mp4");
    let cache = temp_cache();
    let frames = 30;
    let r = run(&format!(
        "filesrc location={} ! qtdemux ! avdec_h264 ! identity eos-after={frames} \
         ! videoconvert ! video/x-raw,format=NV12 ! taoinfer config-file={} engine-cache-dir={} \
         post-messages=true ! appsink name=sink",
        quoted(&video),
        quoted(shared.join(LPD_CONFIG)),
        quoted(cache.path())
    ));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.buffers.len(), frames);
    let messages = r.element_messages("taoinfer");
    assert_eq!(messages.len(), frames, "one message per inferred frame");
    let mut with_plates = 0;
    for (i, (buffer, _)) in r.buffers.iter().enumerate() {
        let plates = objects(buffer);
        with_plates += usize::from(!plates.is_empty());
        for o in plates {
            println!("frame {i}: {o:?}");
            let aspect = o.width as f64 / o.height as f64;
            assert!(
                (1.5..=6.0).contains(&aspect),
                "frame {i}: {o:?} is not plate-shaped"
            );
            assert!(
                (400..800).contains(&o.x) && (300..500).contains(&o.y),
                "frame {i}: {o:?} is away from the plate"
            );
        }
    }
    println!("frames with a plate: {with_plates} / {frames}");
    assert!(with_plates >= 1, "the plate is found in some frame");
}
