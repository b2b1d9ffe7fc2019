//! A heap buffer of f32 aligned to 64 bytes (one cache line, one AVX-512 register).

/// One cache line of floats; the allocation unit that carries the alignment.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// An owned, 64-byte aligned, zero-initialised f32 buffer.
///
/// Packed weights live in one of these; [`AlignedVec::as_slice`] is the plain f32 data a plan
/// file stores, and [`AlignedVec::from_slice`] restores it.
#[derive(Clone)]
pub struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedVec {
    /// `len` zeros.
    pub fn zeros(len: usize) -> AlignedVec {
        AlignedVec {
            lines: vec![Line([0.0; 16]); len.div_ceil(16)],
            len,
        }
    }

    /// A copy of `data`.
    pub fn from_slice(data: &[f32]) -> AlignedVec {
        let mut v = AlignedVec::zeros(data.len());
        v.as_mut_slice().copy_from_slice(data);
        v
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: `lines` holds `lines.len() * 16 >= len` initialised f32 values laid out
        // contiguously (Line is repr(C) around [f32; 16]); the borrow ties the slice to self.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const f32, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut f32, self.len) }
    }
}

impl std::fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedVec(len {})", self.len)
    }
}

impl PartialEq for AlignedVec {
    fn eq(&self, other: &AlignedVec) -> bool {
        self.as_slice() == other.as_slice()
    }
}
