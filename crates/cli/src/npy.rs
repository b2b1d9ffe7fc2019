//! NumPy `.npy` files (format version 1.0) for float32 arrays: the magic, the header dictionary
//! padded so the data starts at a multiple of 64 bytes, then the values little-endian, C order.

/// The whole file for an array of `shape` holding `data` (whose length must be the shape's product).
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        // A one-element tuple needs its trailing comma in Python.
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + header length (2) + header, ending in '\n', padded to 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    // The header of an array of any rank this tool writes stays far below 64 KiB.
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// A file name for a tensor: characters other than letters, digits, `-`, `_` and `.` become `_`
/// (`output_cov/Sigmoid` → `output_cov_Sigmoid.npy`, `softargmax:1` → `softargmax_1.npy`).
pub fn file_name_for(tensor: &str) -> String {
    let mut name: String = tensor
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
    }
    name + ".npy"
}

/// File names for several tensors, made unique with a numeric suffix where two names collapse to the
/// same file name.
pub fn file_names_for<'a>(tensors: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    let mut names = Vec::new();
    for tensor in tensors {
        let base = file_name_for(tensor);
        let mut name = base.clone();
        let mut n = 2;
        while !taken.insert(name.to_ascii_lowercase()) {
            name = format!("{}_{n}.npy", base.trim_end_matches(".npy"));
            n += 1;
        }
        names.push(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_follows() {
        let bytes = npy_bytes(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(
            header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
            "{header}"
        );
        assert!(header.ends_with('\n'));
        let data = &bytes[10 + header_len..];
        assert_eq!(data.len(), 24);
        assert_eq!(&data[20..], 6.5f32.to_le_bytes());
        let one = npy_bytes(&[4], &[0.0; 4]);
        assert!(
            std::str::from_utf8(&one[10..74])
                .unwrap()
                .contains("'shape': (4,), }")
        );
    }

    #[test]
    fn names_are_safe_and_unique() {
        assert_eq!(
            file_name_for("output_cov/Sigmoid"),
            "output_cov_Sigmoid.npy"
        );
        assert_eq!(file_name_for("softargmax:1"), "softargmax_1.npy");
        assert_eq!(file_name_for("../x"), "_.._x.npy");
        assert_eq!(file_name_for(""), "_.npy");
        assert_eq!(
            file_names_for(["a/b", "a:b", "a_b"]),
            ["a_b.npy", "a_b_2.npy", "a_b_3.npy"]
        );
    }
}
