//! Photos into network inputs, the way the GStreamer element prepares frames: decode, resize to the
//! input's size (bilinear, pixel centres aligned, borders clamped), put the channels in the model's
//! colour order (RGB, BGR or gray as BT.601 luma), normalise as `scale × (pixel − offset[channel])`
//! (DeepStream's `net-scale-factor` and `offsets`), and lay the image out planar (C×H×W) or
//! interleaved (H×W×C) as the input is.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use image::RgbImage;
use tao_engine::backend::IoDesc;

use crate::CliResult;

/// The channel order a network expects (`model-color-format` 0, 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorOrder {
    Rgb,
    Bgr,
    Gray,
}

impl ColorOrder {
    pub fn channels(self) -> usize {
        match self {
            ColorOrder::Gray => 1,
            ColorOrder::Rgb | ColorOrder::Bgr => 3,
        }
    }
}

impl FromStr for ColorOrder {
    type Err = String;

    fn from_str(text: &str) -> Result<ColorOrder, String> {
        match text.to_ascii_lowercase().as_str() {
            "rgb" => Ok(ColorOrder::Rgb),
            "bgr" => Ok(ColorOrder::Bgr),
            "gray" | "grey" => Ok(ColorOrder::Gray),
            _ => Err(format!(
                "--color: unknown colour order `{text}` (expected rgb, bgr or gray)"
            )),
        }
    }
}

impl fmt::Display for ColorOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColorOrder::Rgb => "rgb",
            ColorOrder::Bgr => "bgr",
            ColorOrder::Gray => "gray",
        })
    }
}

/// How pixel values become network values. `color` `None` follows the input: gray for one channel,
/// RGB for three.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    pub scale: f32,
    /// Per channel of the network input; empty means 0, one value applies to every channel.
    pub offsets: Vec<f32>,
    pub color: Option<ColorOrder>,
}

impl Default for Normalization {
    fn default() -> Normalization {
        Normalization {
            scale: 1.0,
            offsets: Vec::new(),
            color: None,
        }
    }
}

/// `--scale`: a finite number (e.g. 0.00392156862745098 for 1/255).
pub fn parse_scale(text: &str) -> CliResult<f32> {
    match text.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("--scale: `{text}` is not a finite number")),
    }
}

/// `--offsets`: finite numbers separated by `,` or `;` (DeepStream writes `;`).
pub fn parse_offsets(text: &str) -> CliResult<Vec<f32>> {
    let values: Vec<&str> = text
        .split([',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if values.is_empty() {
        return Err(format!("--offsets: `{text}` lists no value"));
    }
    values
        .iter()
        .map(|v| match v.parse::<f32>() {
            Ok(x) if x.is_finite() => Ok(x),
            _ => Err(format!("--offsets: `{v}` is not a finite number")),
        })
        .collect()
}

/// How one image sits in a network input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelLayout {
    /// Planar: C×H×W (NCHW inputs).
    Chw,
    /// Interleaved: H×W×C (NHWC inputs).
    Hwc,
}

/// Size and layout of an image input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputGeometry {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub layout: PixelLayout,
}

impl InputGeometry {
    /// Reads the per-image shape of an engine input: C×H×W, or H×W×C, with 1 or 3 channels.
    pub fn of(input: &IoDesc) -> CliResult<InputGeometry> {
        let image_channels = |c: usize| c == 1 || c == 3;
        let (channels, height, width, layout) = match input.shape.as_slice() {
            &[c, h, w] if image_channels(c) => (c, h, w, PixelLayout::Chw),
            &[h, w, c] if image_channels(c) => (c, h, w, PixelLayout::Hwc),
            shape => {
                return Err(format!(
                    "input `{}` of shape {shape:?} per image is not an image (expected C×H×W or H×W×C with 1 or 3 channels)",
                    input.name
                ));
            }
        };
        if height == 0 || width == 0 {
            return Err(format!("input `{}` has an empty image size", input.name));
        }
        Ok(InputGeometry {
            name: input.name.clone(),
            channels,
            height,
            width,
            layout,
        })
    }

    pub fn elements(&self) -> usize {
        self.channels * self.height * self.width
    }
}

impl fmt::Display for InputGeometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, h, w) = (self.channels, self.height, self.width);
        match self.layout {
            PixelLayout::Chw => write!(f, "{} {c}x{h}x{w} (CHW)", self.name),
            PixelLayout::Hwc => write!(f, "{} {h}x{w}x{c} (HWC)", self.name),
        }
    }
}

/// Per-channel gain and bias (`scale × x − scale × offset`) for an input, checked against it.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocessor {
    pub geometry: InputGeometry,
    pub color: ColorOrder,
    /// Per channel of the input.
    pub offsets: Vec<f32>,
    gain: f32,
    bias: Vec<f32>,
}

impl Preprocessor {
    pub fn new(geometry: InputGeometry, norm: &Normalization) -> CliResult<Preprocessor> {
        let color = norm.color.unwrap_or(if geometry.channels == 1 {
            ColorOrder::Gray
        } else {
            ColorOrder::Rgb
        });
        if color.channels() != geometry.channels {
            return Err(format!(
                "--color {color} gives {} channel{}; input `{}` has {}",
                color.channels(),
                if color.channels() == 1 { "" } else { "s" },
                geometry.name,
                geometry.channels
            ));
        }
        let offsets = match norm.offsets.len() {
            0 => vec![0.0; geometry.channels],
            1 => vec![norm.offsets[0]; geometry.channels],
            n if n == geometry.channels => norm.offsets.clone(),
            n => {
                return Err(format!(
                    "--offsets lists {n} values; input `{}` has {} channel{}",
                    geometry.name,
                    geometry.channels,
                    if geometry.channels == 1 { "" } else { "s" }
                ));
            }
        };
        if !norm.scale.is_finite() {
            return Err("--scale must be a finite number".into());
        }
        Ok(Preprocessor {
            bias: offsets.iter().map(|o| -o * norm.scale).collect(),
            offsets,
            gain: norm.scale,
            geometry,
            color,
        })
    }

    /// One photo as network values, appended to `out` (so a batch is consecutive images).
    pub fn push(&self, image: &RgbImage, out: &mut Vec<f32>) {
        let g = &self.geometry;
        let (iw, ih) = (image.width() as usize, image.height() as usize);
        let cols = taps(iw, g.width);
        let rows = taps(ih, g.height);
        let start = out.len();
        out.resize(start + g.elements(), 0.0);
        let dst = &mut out[start..];
        let plane = g.height * g.width;
        let pixels = image.as_raw();
        let at = |x: usize, y: usize, c: usize| pixels[(y * iw + x) * 3 + c] as f32;
        for (y, row) in rows.iter().enumerate() {
            for (x, col) in cols.iter().enumerate() {
                let mut rgb = [0f32; 3];
                for (c, v) in rgb.iter_mut().enumerate() {
                    let top = at(col.i0, row.i0, c) * (1.0 - col.w) + at(col.i1, row.i0, c) * col.w;
                    let bottom =
                        at(col.i0, row.i1, c) * (1.0 - col.w) + at(col.i1, row.i1, c) * col.w;
                    *v = top * (1.0 - row.w) + bottom * row.w;
                }
                let values: [f32; 3] = match self.color {
                    ColorOrder::Rgb => rgb,
                    ColorOrder::Bgr => [rgb[2], rgb[1], rgb[0]],
                    ColorOrder::Gray => {
                        [0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2], 0.0, 0.0]
                    }
                };
                for (c, (value, bias)) in values.iter().zip(&self.bias).enumerate() {
                    let i = match g.layout {
                        PixelLayout::Chw => c * plane + y * g.width + x,
                        PixelLayout::Hwc => (y * g.width + x) * g.channels + c,
                    };
                    dst[i] = self.gain * value + bias;
                }
            }
        }
    }
}

impl fmt::Display for Preprocessor {
    /// `input_1 3x480x640 (CHW), bgr, scale 0.003921569, offsets 0,0,0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offsets: Vec<String> = self.offsets.iter().map(|o| o.to_string()).collect();
        write!(
            f,
            "{}, {}, scale {}, offsets {}",
            self.geometry,
            self.color,
            self.gain,
            offsets.join(",")
        )
    }
}

/// Source positions of one output coordinate: `i0` and `i1`, weight `w` on `i1`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tap {
    i0: usize,
    i1: usize,
    w: f32,
}

/// Bilinear taps with pixel centres aligned (`(d + 0.5) × src/dst − 0.5`), clamped at the borders.
fn taps(src: usize, dst: usize) -> Vec<Tap> {
    let ratio = src as f64 / dst as f64;
    let last = src.saturating_sub(1);
    (0..dst)
        .map(|d| {
            let s = ((d as f64 + 0.5) * ratio - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(last);
            let i1 = (i0 + 1).min(last);
            Tap {
                i0,
                i1,
                w: (s - i0 as f64).clamp(0.0, 1.0) as f32,
            }
        })
        .collect()
}

/// Decodes a PNG or JPEG file (format by content) into 8-bit RGB. Errors name the file.
pub fn load_image(path: &Path) -> CliResult<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    decode_image(&bytes, path)
}

/// Decodes PNG or JPEG bytes (format by content) into 8-bit RGB; `path` names them in errors. The
/// image crate's default limits bound the memory a hostile header can ask for.
pub fn decode_image(bytes: &[u8], path: &Path) -> CliResult<RgbImage> {
    let format = photo_format(bytes, path)?;
    let image =
        image::load_from_memory_with_format(bytes, format).map_err(|e| decode_error(path, &e))?;
    if image.width() == 0 || image.height() == 0 {
        return Err(format!("{}: the image is empty", path.display()));
    }
    Ok(image.to_rgb8())
}

/// Width and height from a photo file's header, without decoding its pixels: checks a list of
/// photos cheaply before any work starts.
pub fn image_size(path: &Path) -> CliResult<(u32, u32)> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let format = photo_format(&bytes, path)?;
    let (width, height) = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format)
        .into_dimensions()
        .map_err(|e| decode_error(path, &e))?;
    if width == 0 || height == 0 {
        return Err(format!("{}: the image is empty", path.display()));
    }
    Ok((width, height))
}

/// The decoder's message on one line (some end in or contain line breaks).
fn decode_error(path: &Path, e: &image::ImageError) -> String {
    let detail: Vec<String> = e
        .to_string()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    format!(
        "{}: cannot decode the image: {}",
        path.display(),
        detail.join(" ")
    )
}

fn photo_format(bytes: &[u8], path: &Path) -> CliResult<image::ImageFormat> {
    let format = image::guess_format(bytes).map_err(|_| {
        format!(
            "{}: cannot decode the image: not a PNG or JPEG file",
            path.display()
        )
    })?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        return Err(format!(
            "{}: cannot decode the image: {format:?} is not supported (PNG or JPEG)",
            path.display()
        ));
    }
    Ok(format)
}

/// The photos of a folder (`.jpg`, `.jpeg`, `.png`, any case), sorted by name.
pub fn images_in(dir: &Path) -> CliResult<Vec<std::path::PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
            .unwrap_or(false);
        if is_image && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(shape: &[usize]) -> CliResult<InputGeometry> {
        InputGeometry::of(&IoDesc {
            name: "in".into(),
            shape: shape.to_vec(),
        })
    }

    #[test]
    fn option_parsing() {
        assert_eq!(parse_scale("0.5").unwrap(), 0.5);
        assert!(parse_scale("inf").unwrap_err().contains("--scale"));
        assert!(parse_scale("x").is_err());
        assert_eq!(parse_offsets("1,2;3").unwrap(), [1.0, 2.0, 3.0]);
        assert!(parse_offsets(",").unwrap_err().contains("lists no value"));
        assert!(parse_offsets("1,nan").unwrap_err().contains("`nan`"));
        assert_eq!("BGR".parse::<ColorOrder>().unwrap(), ColorOrder::Bgr);
        assert!("yuv".parse::<ColorOrder>().unwrap_err().contains("`yuv`"));
    }

    #[test]
    fn geometry_of_inputs() {
        let g = geometry(&[3, 480, 640]).unwrap();
        assert_eq!((g.channels, g.height, g.width), (3, 480, 640));
        assert_eq!(g.layout, PixelLayout::Chw);
        let g = geometry(&[224, 224, 3]).unwrap();
        assert_eq!(g.layout, PixelLayout::Hwc);
        assert!(geometry(&[80, 2]).unwrap_err().contains("not an image"));
        assert!(geometry(&[4, 8, 8]).is_err());
        assert!(geometry(&[3, 0, 8]).unwrap_err().contains("empty"));
    }

    #[test]
    fn taps_align_pixel_centres() {
        // Same size: identity.
        assert!(
            taps(4, 4)
                .iter()
                .enumerate()
                .all(|(i, t)| t.i0 == i && t.w == 0.0)
        );
        // Doubling: 0.25 steps between centres, clamped at the left border.
        let t = taps(2, 4);
        assert_eq!((t[0].i0, t[0].w), (0, 0.0));
        assert_eq!((t[1].i0, t[1].i1, t[1].w), (0, 1, 0.25));
        assert_eq!((t[2].i0, t[2].i1, t[2].w), (0, 1, 0.75));
        assert_eq!((t[3].i0, t[3].i1), (1, 1));
    }

    #[test]
    fn normalises_in_the_models_order() {
        // 1x2 image: red, then blue.
        let img = RgbImage::from_raw(2, 1, vec![200, 10, 0, 0, 20, 100]).unwrap();
        let norm = Normalization {
            scale: 0.5,
            offsets: vec![10.0, 0.0, 20.0],
            color: Some(ColorOrder::Bgr),
        };
        let p = Preprocessor::new(geometry(&[3, 1, 2]).unwrap(), &norm).unwrap();
        let mut out = Vec::new();
        p.push(&img, &mut out);
        // Planar BGR: B plane (offset 10), G plane (0), R plane (20).
        assert_eq!(out, [-5.0, 45.0, 5.0, 10.0, 90.0, -10.0]);
        // Interleaved, one offset for all channels, RGB.
        let norm = Normalization {
            scale: 1.0,
            offsets: vec![1.0],
            color: None,
        };
        let p = Preprocessor::new(geometry(&[2, 2, 3]).unwrap(), &norm).unwrap();
        let mut out = vec![7.0];
        p.push(&img, &mut out);
        let row = [199.0, 9.0, -1.0, -1.0, 19.0, 99.0];
        assert_eq!(out[0], 7.0);
        assert_eq!(&out[1..7], row);
        assert_eq!(&out[7..], row, "one source row stretched over two");
        // Gray for one channel: BT.601 luma.
        let p =
            Preprocessor::new(geometry(&[1, 1, 2]).unwrap(), &Normalization::default()).unwrap();
        let mut out = Vec::new();
        p.push(&img, &mut out);
        let luma = |r: f32, g: f32, b: f32| 0.299 * r + 0.587 * g + 0.114 * b;
        assert_eq!(out, [luma(200.0, 10.0, 0.0), luma(0.0, 20.0, 100.0)]);
    }

    #[test]
    fn resizes_bilinearly() {
        // 2x1 → 4x1: 0, 0.25, 0.75, 1 of the way from the first pixel to the second.
        let img = RgbImage::from_raw(2, 1, vec![0, 0, 0, 100, 100, 100]).unwrap();
        let p =
            Preprocessor::new(geometry(&[3, 1, 4]).unwrap(), &Normalization::default()).unwrap();
        let mut out = Vec::new();
        p.push(&img, &mut out);
        assert_eq!(&out[..4], [0.0, 25.0, 75.0, 100.0]);
    }

    #[test]
    fn photos_by_content() {
        let mut png = Vec::new();
        RgbImage::from_raw(3, 2, vec![9; 18])
            .unwrap()
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let name = Path::new("a.jpg");
        let img = decode_image(&png, name).unwrap();
        assert_eq!((img.width(), img.height()), (3, 2));
        let err = decode_image(b"hello", name).unwrap_err();
        assert_eq!(
            err,
            "a.jpg: cannot decode the image: not a PNG or JPEG file"
        );
        let err = decode_image(&png[..png.len() - 20], name).unwrap_err();
        assert!(err.starts_with("a.jpg: cannot decode the image: "), "{err}");
        // Whatever the decoders say, the error stays on one line.
        let mut jpeg = Vec::new();
        RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 7, 3]))
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        for data in [&jpeg, &png] {
            for cut in 3..data.len() {
                if let Err(e) = decode_image(&data[..cut], name) {
                    assert!(!e.contains('\n') && e.starts_with("a.jpg: "), "{e:?}");
                }
            }
        }
        let err = decode_image(b"GIF89a\x01\x00\x01\x00", name).unwrap_err();
        assert!(err.starts_with("a.jpg: cannot decode the image: "), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.png");
        std::fs::write(&file, &png).unwrap();
        assert_eq!(image_size(&file).unwrap(), (3, 2));
        assert_eq!(load_image(&file).unwrap(), img);
        let err = image_size(&dir.path().join("none.png")).unwrap_err();
        assert!(err.starts_with("cannot read "), "{err}");
    }

    #[test]
    fn options_that_do_not_fit_the_input() {
        let g = geometry(&[3, 4, 4]).unwrap();
        let gray = Normalization {
            color: Some(ColorOrder::Gray),
            ..Normalization::default()
        };
        let err = Preprocessor::new(g.clone(), &gray).unwrap_err();
        assert!(
            err.contains("--color gray gives 1 channel; input `in` has 3"),
            "{err}"
        );
        let two = Normalization {
            offsets: vec![1.0, 2.0],
            ..Normalization::default()
        };
        let err = Preprocessor::new(g, &two).unwrap_err();
        assert!(err.contains("--offsets lists 2 values"), "{err}");
    }
}
