//! Drawing boxes and short labels into packed RGB frames: clipped rectangles and a 5×7 bitmap font
//! (upper-case letters, digits and a little punctuation), scaled by an integer factor.

/// A packed 3- or 4-byte-per-pixel image with the byte offsets of R, G, B (and alpha, if any).
pub struct Canvas<'a> {
    pub data: &'a mut [u8],
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub bytes_per_pixel: usize,
    pub rgb: [usize; 3],
    pub alpha: Option<usize>,
}

/// Glyph rows top to bottom; bit 4 is the leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1E, 0x01, 0x01, 0x0E, 0x01, 0x01, 0x1E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        ' ' => [0; 7],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

pub const GLYPH_WIDTH: usize = 5;
pub const GLYPH_HEIGHT: usize = 7;

/// Distinct colours for class ids.
pub fn class_color(class_id: u32) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 8] = [
        [0, 255, 0],
        [255, 64, 64],
        [64, 160, 255],
        [255, 220, 0],
        [255, 0, 255],
        [0, 255, 255],
        [255, 140, 0],
        [160, 255, 160],
    ];
    PALETTE[class_id as usize % PALETTE.len()]
}

impl Canvas<'_> {
    fn put(&mut self, x: usize, y: usize, color: [u8; 3]) {
        if x >= self.width || y >= self.height {
            return;
        }
        let i = y * self.stride + x * self.bytes_per_pixel;
        let Some(px) = self.data.get_mut(i..i + self.bytes_per_pixel) else {
            return;
        };
        for (k, &off) in self.rgb.iter().enumerate() {
            px[off] = color[k];
        }
        if let Some(a) = self.alpha {
            px[a] = 255;
        }
    }

    /// Fills the rectangle `[x0, x1) × [y0, y1)` clipped to the image (coordinates may be negative).
    pub fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]) {
        let clip = |v: i64, max: usize| v.clamp(0, max as i64) as usize;
        let (x0, x1) = (clip(x0, self.width), clip(x1, self.width));
        let (y0, y1) = (clip(y0, self.height), clip(y1, self.height));
        for y in y0..y1 {
            for x in x0..x1 {
                self.put(x, y, color);
            }
        }
    }

    /// Outline of the box `(x, y, w, h)`, `thickness` pixels drawn inwards.
    pub fn rectangle(&mut self, x: i64, y: i64, w: i64, h: i64, thickness: i64, color: [u8; 3]) {
        let t = thickness.max(1).min(w.max(1)).min(h.max(1));
        self.fill(x, y, x + w, y + t, color);
        self.fill(x, y + h - t, x + w, y + h, color);
        self.fill(x, y, x + t, y + h, color);
        self.fill(x + w - t, y, x + w, y + h, color);
    }

    /// Size in pixels of `text` drawn at `scale`.
    pub fn text_size(text: &str, scale: usize) -> (usize, usize) {
        let n = text.chars().count();
        (n * (GLYPH_WIDTH + 1) * scale, GLYPH_HEIGHT * scale)
    }

    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, color: [u8; 3]) {
        let s = scale.max(1) as i64;
        for (n, c) in text.chars().enumerate() {
            let gx = x + n as i64 * (GLYPH_WIDTH as i64 + 1) * s;
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..GLYPH_WIDTH {
                    if bits & (0x10 >> col) != 0 {
                        let px = gx + col as i64 * s;
                        let py = y + row as i64 * s;
                        self.fill(px, py, px + s, py + s, color);
                    }
                }
            }
        }
    }

    /// A box with its label on a filled tab above it (inside the box when there is no room above).
    pub fn labelled_box(
        &mut self,
        rect: (i64, i64, i64, i64),
        label: Option<&str>,
        thickness: i64,
        scale: usize,
        color: [u8; 3],
    ) {
        let (x, y, w, h) = rect;
        self.rectangle(x, y, w, h, thickness, color);
        let Some(label) = label else {
            return;
        };
        let (tw, th) = Canvas::text_size(label, scale);
        let pad = scale as i64;
        let tab_h = th as i64 + 2 * pad;
        let tab_w = tw as i64 + 2 * pad;
        let tab_y = if y >= tab_h { y - tab_h } else { y };
        // Slide the tab left when it would run off the right edge.
        let tab_x = x.min(self.width as i64 - tab_w).max(0);
        self.fill(tab_x, tab_y, tab_x + tab_w, tab_y + tab_h, color);
        self.text(tab_x + pad, tab_y + pad, label, scale, [0, 0, 0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canvas(data: &mut [u8], w: usize, h: usize) -> Canvas<'_> {
        Canvas {
            data,
            width: w,
            height: h,
            stride: w * 4,
            bytes_per_pixel: 4,
            rgb: [2, 1, 0],
            alpha: Some(3),
        }
    }

    #[test]
    fn rectangle_outline_is_clipped_and_hollow() {
        let (w, h) = (10, 8);
        let mut data = vec![0u8; w * h * 4];
        canvas(&mut data, w, h).rectangle(2, 2, 5, 4, 1, [255, 0, 0]);
        let red = |x: usize, y: usize| data[(y * w + x) * 4 + 2] == 255;
        assert!(red(2, 2) && red(6, 2) && red(2, 5) && red(6, 5));
        assert!(!red(4, 3), "inside stays untouched");
        assert!(!red(7, 2), "outside stays untouched");
        assert_eq!(data[(2 * w + 2) * 4 + 3], 255, "alpha set");
        // Far outside and negative coordinates do not panic.
        canvas(&mut data, w, h).rectangle(-50, -50, 500, 500, 3, [0, 255, 0]);
        canvas(&mut data, w, h).labelled_box((8, 0, 30, 30), Some("person 0.99"), 2, 2, [1, 2, 3]);
    }

    #[test]
    fn text_lights_glyph_pixels() {
        let (w, h) = (12, 7);
        let mut data = vec![0u8; w * h * 4];
        canvas(&mut data, w, h).text(0, 0, "I-", 1, [255, 255, 255]);
        let on = |x: usize, y: usize| data[(y * w + x) * 4] == 255;
        // 'I': top bar columns 1..=3, stem column 2.
        assert!(on(1, 0) && on(2, 3) && !on(0, 3));
        // '-' starts at column 6, middle row.
        assert!(on(6, 3) && on(10, 3) && !on(6, 0));
        assert_eq!(Canvas::text_size("ab", 2), (24, 14));
    }
}
