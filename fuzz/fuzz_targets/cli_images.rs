//! Any bytes as a photo for `taoctl run`/`calibrate` and as their option values: the photo is decoded
//! and prepared for a network input whose size also comes from the bytes, or rejected with a
//! one-line error naming the file; never a panic, never an out-of-range write.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tao_cli::commands::calibrate::parse_algorithm;
use tao_cli::engines::BackendChoice;
use tao_cli::preprocess::{
    ColorOrder, InputGeometry, Normalization, Preprocessor, decode_image, parse_offsets,
    parse_scale,
};
use tao_engine::backend::IoDesc;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_offsets(&text);
    let _ = parse_scale(&text);
    let _ = parse_algorithm(&text);
    let _ = text.parse::<ColorOrder>();
    let _ = text.parse::<BackendChoice>();

    let [channels, height, width, color, rest @ ..] = data else {
        return;
    };
    // Network inputs up to 64×64, either layout, any colour option.
    let shape = match channels % 4 {
        0 => vec![1, 1 + (*height % 64) as usize, 1 + (*width % 64) as usize],
        1 => vec![3, 1 + (*height % 64) as usize, 1 + (*width % 64) as usize],
        2 => vec![1 + (*height % 64) as usize, 1 + (*width % 64) as usize, 3],
        _ => vec![*channels as usize, *height as usize, *width as usize],
    };
    let Ok(geometry) = InputGeometry::of(&IoDesc {
        name: "in".into(),
        shape,
    }) else {
        return;
    };
    let normalization = Normalization {
        scale: 1.0 / 255.0,
        offsets: vec![0.5; (*color as usize) % 4],
        color: match color % 4 {
            0 => None,
            1 => Some(ColorOrder::Rgb),
            2 => Some(ColorOrder::Bgr),
            _ => Some(ColorOrder::Gray),
        },
    };
    let Ok(preprocessor) = Preprocessor::new(geometry.clone(), &normalization) else {
        return;
    };
    match decode_image(rest, Path::new("photo.png")) {
        Ok(image) => {
            let mut out = vec![7.0];
            preprocessor.push(&image, &mut out);
            assert_eq!(out.len(), 1 + geometry.elements());
            assert_eq!(out[0], 7.0);
            assert!(out.iter().all(|v| v.is_finite()));
        }
        Err(e) => assert!(e.starts_with("photo.png: ") && !e.contains('\n'), "{e}"),
    }
});
