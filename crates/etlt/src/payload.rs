//! Telling a decrypted payload from garbage: a wrong key yields random bytes of the right length, so
//! the first bytes and the protobuf framing are checked before anything downstream parses them.

use std::fmt;

/// What the container holds. NVIDIA's tools decide this from the header alone: a non-empty input name
/// means UFF, an empty one ONNX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    Uff,
    Onnx,
}

impl PayloadKind {
    pub fn from_input_name(name: &str) -> PayloadKind {
        if name.is_empty() {
            PayloadKind::Onnx
        } else {
            PayloadKind::Uff
        }
    }

    /// Usual file extension of a raw payload of this kind.
    pub fn extension(self) -> &'static str {
        match self {
            PayloadKind::Uff => "uff",
            PayloadKind::Onnx => "onnx",
        }
    }
}

impl fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PayloadKind::Uff => "UFF",
            PayloadKind::Onnx => "ONNX",
        })
    }
}

/// MetaGraph { version: 1, descriptor_core_version: 1, descriptors: … } as every UFF writer starts.
pub const UFF_MAGIC: [u8; 5] = [0x08, 0x01, 0x10, 0x01, 0x1a];

/// Bytes of plaintext the streaming decoder needs to judge the payload before writing anything.
pub const PREFIX_LEN: usize = 32;

/// ModelProto fields and their wire types (ONNX spec): used to check the field after `ir_version`.
const ONNX_MODEL_FIELDS: &[(u64, u8)] = &[
    (1, 0),  // ir_version
    (2, 2),  // producer_name
    (3, 2),  // producer_version
    (4, 2),  // domain
    (5, 0),  // model_version
    (6, 2),  // doc_string
    (7, 2),  // graph
    (8, 2),  // opset_import
    (14, 2), // metadata_props
    (20, 2), // training_info
    (25, 2), // functions
];
/// ir_version values that exist or plausibly will (IR 3 was ONNX 1.0; IR 11 is current).
const ONNX_IR_VERSIONS: std::ops::RangeInclusive<u64> = 1..=32;

/// Quick check on the first bytes only (the streaming path): true when they can start a payload of
/// this kind. `prefix` may be shorter than [`PREFIX_LEN`] only when the payload itself is.
pub fn prefix_looks_valid(kind: PayloadKind, prefix: &[u8]) -> bool {
    match kind {
        PayloadKind::Uff => prefix.starts_with(&UFF_MAGIC),
        PayloadKind::Onnx => {
            let mut wire = Wire::new(prefix);
            let Some((1, 0)) = wire.tag() else {
                return false;
            };
            let Some(ir_version) = wire.varint() else {
                return false;
            };
            if !ONNX_IR_VERSIONS.contains(&ir_version) {
                return false;
            }
            match wire.tag() {
                Some(tag) => ONNX_MODEL_FIELDS.contains(&tag),
                // A model of nothing but an ir_version is no model.
                None => false,
            }
        }
    }
}

/// Full check of an in-memory payload: the prefix, then the whole top-level protobuf framing, and the
/// presence of the graph (ONNX `graph`, whose own framing is checked too; UFF `graphs`).
pub fn payload_is_valid(kind: PayloadKind, bytes: &[u8]) -> bool {
    if !prefix_looks_valid(kind, bytes) {
        return false;
    }
    let graph_field = match kind {
        PayloadKind::Uff => 4,
        PayloadKind::Onnx => 7,
    };
    let mut graph = None;
    if !walk_message(bytes, |field, body| {
        if field == graph_field {
            graph = Some(body);
        }
    }) {
        return false;
    }
    match (kind, graph) {
        (_, None) => false,
        (PayloadKind::Uff, Some(_)) => true,
        (PayloadKind::Onnx, Some(body)) => walk_message(body, |_, _| {}),
    }
}

/// Walks one protobuf message's fields; calls `on_bytes` for each length-delimited field. False when
/// the framing is broken anywhere.
fn walk_message<'a>(bytes: &'a [u8], mut on_bytes: impl FnMut(u64, &'a [u8])) -> bool {
    let mut wire = Wire::new(bytes);
    while !wire.at_end() {
        let Some((field, wire_type)) = wire.tag() else {
            return false;
        };
        let ok = match wire_type {
            0 => wire.varint().is_some(),
            1 => wire.skip(8),
            2 => match wire.length_delimited() {
                Some(body) => {
                    on_bytes(field, body);
                    true
                }
                None => false,
            },
            5 => wire.skip(4),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A cursor over protobuf wire format.
struct Wire<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Wire { bytes, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.pos)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// A field tag: (field number ≥ 1, wire type).
    fn tag(&mut self) -> Option<(u64, u8)> {
        let raw = self.varint()?;
        let field = raw >> 3;
        (field >= 1).then_some((field, (raw & 7) as u8))
    }

    fn skip(&mut self, n: usize) -> bool {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.bytes.len() => {
                self.pos = end;
                true
            }
            _ => false,
        }
    }

    fn length_delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let start = self.pos;
        self.skip(len).then(|| &self.bytes[start..start + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uff_prefix() {
        assert!(prefix_looks_valid(
            PayloadKind::Uff,
            &[8, 1, 16, 1, 0x1a, 3]
        ));
        assert!(!prefix_looks_valid(PayloadKind::Uff, &[8, 1, 16, 2, 0x1a]));
        assert!(!prefix_looks_valid(PayloadKind::Uff, &[]));
    }

    #[test]
    fn onnx_prefix_needs_ir_version_then_a_model_field() {
        // ir_version 5, then producer_name "ab"
        assert!(prefix_looks_valid(
            PayloadKind::Onnx,
            &[8, 5, 0x12, 2, b'a', b'b']
        ));
        // ir_version 0 does not exist
        assert!(!prefix_looks_valid(PayloadKind::Onnx, &[8, 0, 0x12, 0]));
        // field 9 is not a ModelProto field
        assert!(!prefix_looks_valid(PayloadKind::Onnx, &[8, 5, 0x4a, 0]));
        // nothing after the version
        assert!(!prefix_looks_valid(PayloadKind::Onnx, &[8, 5]));
    }

    #[test]
    fn onnx_needs_a_well_framed_graph() {
        // ir_version 7, graph { name "g" }
        let good = [8, 7, 0x3a, 3, 0x12, 1, b'g'];
        assert!(payload_is_valid(PayloadKind::Onnx, &good));
        // graph length runs past the end
        assert!(!payload_is_valid(
            PayloadKind::Onnx,
            &[8, 7, 0x3a, 9, 0x12, 1, b'g']
        ));
        // no graph at all
        assert!(!payload_is_valid(PayloadKind::Onnx, &[8, 7, 0x12, 1, b'p']));
        // graph body with broken framing inside
        assert!(!payload_is_valid(
            PayloadKind::Onnx,
            &[8, 7, 0x3a, 2, 0x12, 5]
        ));
    }

    #[test]
    fn uff_needs_graphs_field() {
        let good = [8, 1, 16, 1, 0x1a, 0, 0x22, 2, 0x0a, 0];
        assert!(payload_is_valid(PayloadKind::Uff, &good));
        assert!(!payload_is_valid(PayloadKind::Uff, &[8, 1, 16, 1, 0x1a, 0]));
    }
}
