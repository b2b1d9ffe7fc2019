//! Frames of any format, size and plane layout (including planes too short for the size) through
//! taoinfer's preprocessing into any network input: an error or a tensor, never a panic or an
//! out-of-bounds read.
#![no_main]

use gsttaoinfer::preprocess::{
    ColorOrder, FrameView, InputSpec, Preprocessor, ScalingFilter, SourceFormat, TensorLayout,
    YuvMatrix,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let (head, pixels) = data.split_at(12);
    let format = match head[0] % 6 {
        0 => SourceFormat::Packed {
            bytes_per_pixel: 3,
            r: 0,
            g: 1,
            b: 2,
        },
        1 => SourceFormat::Packed {
            bytes_per_pixel: 4,
            r: 2,
            g: 1,
            b: 0,
        },
        2 => SourceFormat::Gray8,
        3 => SourceFormat::Nv12,
        _ => SourceFormat::I420,
    };
    let (w, h) = (usize::from(head[1] % 64), usize::from(head[2] % 64));
    let spec = InputSpec {
        width: usize::from(head[3] % 48),
        height: usize::from(head[4] % 48),
        color: match head[5] % 3 {
            0 => ColorOrder::Rgb,
            1 => ColorOrder::Bgr,
            _ => ColorOrder::Gray,
        },
        layout: if head[6] & 1 == 0 {
            TensorLayout::Chw
        } else {
            TensorLayout::Hwc
        },
        net_scale_factor: 1.0 / 255.0,
        offsets: vec![f32::from(head[7]); usize::from(head[7] % 4)],
        std: vec![],
        maintain_aspect_ratio: head[8] & 1 == 1,
        symmetric_padding: head[8] & 2 == 2,
        filter: if head[8] & 4 == 4 {
            ScalingFilter::Bilinear
        } else {
            ScalingFilter::Nearest
        },
    };
    // One thread: the row split over threads is covered by unit tests, and threads exiting
    // inside the fuzzer trip LeakSanitizer's thread-local bookkeeping.
    let Ok(p) = Preprocessor::new(&spec, format, w, h, YuvMatrix::Bt709, head[9] & 1 == 1, 1)
    else {
        return;
    };
    // Split the remaining bytes into three planes at fuzzer-chosen points.
    let cut1 = (usize::from(head[10]) * pixels.len() / 255).min(pixels.len());
    let cut2 = (cut1 + usize::from(head[11]) * (pixels.len() - cut1) / 255).min(pixels.len());
    let frame = FrameView {
        planes: [&pixels[..cut1], &pixels[cut1..cut2], &pixels[cut2..]],
        strides: [w * 4, w, w],
    };
    let mut out = vec![0f32; spec.elements()];
    let _ = p.run(&frame, &mut out);
    let _ = p.to_frame(1.0, 1.0);
});
