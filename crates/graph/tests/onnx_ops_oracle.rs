//! Every supported op family against ONNX Runtime: small models built with onnx.helper
//! (`tests/oracle/op_models.py`), imported, run by the reference executor and compared; then each
//! imported graph is exported back to ONNX, checked with onnx.checker and run by ONNX Runtime again.
//!
//! Tolerance: relative error max|a-b| / max(max|b|, 1e-6) <= 1e-4 per output tensor; integer and
//! bool outputs must be equal.

mod common;

use std::collections::HashMap;
use std::path::Path;

use tao_graph::ir::Tensor;
use tao_graph::{onnx, reference};

const TOLERANCE: f64 = 1e-4;

struct Case {
    name: String,
    inputs: Vec<(String, String)>,
    outputs: Vec<(String, String)>,
}

fn read_manifest(root: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(root.join("manifest.txt")).expect("manifest");
    let mut cases: Vec<Case> = Vec::new();
    for line in text.lines() {
        let (kind, rest) = line.split_once(' ').expect("manifest line");
        let split = |s: &str| {
            let (name, file) = s.rsplit_once(' ').expect("name and file");
            (name.to_string(), file.to_string())
        };
        match kind {
            "case" => cases.push(Case {
                name: rest.to_string(),
                inputs: Vec::new(),
                outputs: Vec::new(),
            }),
            "input" => cases.last_mut().expect("case").inputs.push(split(rest)),
            "output" => cases.last_mut().expect("case").outputs.push(split(rest)),
            other => panic!("unknown manifest line kind {other}"),
        }
    }
    cases
}

/// Compares named tensors with expected `.npy` files; returns the failures as text.
fn compare(
    case: &Case,
    dir: &Path,
    actual: &HashMap<String, Tensor>,
    prefix: &str,
    what: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, file) in &case.outputs {
        let expected = common::read_npy(&dir.join(format!("{prefix}{file}")));
        let Some(got) = actual.get(name) else {
            failures.push(format!("{}: {what}: no output `{name}`", case.name));
            continue;
        };
        if got.shape() != expected.shape() || got.dtype() != expected.dtype() {
            failures.push(format!(
                "{}: {what}: `{name}` is {} {:?}, expected {} {:?}",
                case.name,
                got.dtype(),
                got.shape(),
                expected.dtype(),
                expected.shape()
            ));
            continue;
        }
        let err = common::relative_error(got, &expected, name);
        if err > TOLERANCE {
            failures.push(format!(
                "{}: {what}: `{name}` relative error {err:.3e}",
                case.name
            ));
        }
    }
    failures
}

#[test]
fn every_op_family_matches_onnx_runtime_and_survives_export() {
    let test = "every_op_family_matches_onnx_runtime_and_survives_export";
    let Some(py) = common::python(test) else {
        return;
    };
    let scratch = common::Scratch::new("ops");
    let log = common::run_oracle(&py, "op_models.py", &[&scratch.path()]);
    println!("{}", log.trim());
    let cases = read_manifest(scratch.path());
    assert!(cases.len() >= 50, "only {} cases", cases.len());

    let mut failures = Vec::new();
    let mut reference_outputs: Vec<HashMap<String, Tensor>> = Vec::new();
    for case in &cases {
        let dir = scratch.path().join(&case.name);
        let graph = match onnx::import_file(dir.join("model.onnx")) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{}: import: {e}", case.name));
                reference_outputs.push(HashMap::new());
                continue;
            }
        };
        let inputs: Vec<(&str, Tensor)> = case
            .inputs
            .iter()
            .map(|(n, f)| (n.as_str(), common::read_npy(&dir.join(f))))
            .collect();
        let outputs: HashMap<String, Tensor> = match reference::run(&graph, &inputs) {
            Ok(o) => o.into_iter().collect(),
            Err(e) => {
                failures.push(format!("{}: reference: {e}", case.name));
                reference_outputs.push(HashMap::new());
                continue;
            }
        };
        // Inference must agree with what evaluation produced.
        let shapes: Vec<(&str, &[usize])> = inputs.iter().map(|(n, t)| (*n, t.shape())).collect();
        match graph.infer_with_input_shapes(&shapes) {
            Ok(facts) => {
                for (name, t) in &outputs {
                    let f = facts.get(name).expect("fact for every output");
                    if f.shape.to_fixed().as_deref() != Some(t.shape()) || f.dtype != t.dtype() {
                        failures.push(format!(
                            "{}: inference says `{name}` is {} {}, evaluation gave {} {:?}",
                            case.name,
                            f.dtype,
                            f.shape,
                            t.dtype(),
                            t.shape()
                        ));
                    }
                }
            }
            Err(e) => failures.push(format!("{}: inference: {e}", case.name)),
        }
        failures.extend(compare(
            case,
            &dir,
            &outputs,
            "",
            "reference vs ONNX Runtime",
        ));
        // Opset 17, or the source opset when that is newer (some features need it).
        let source_opset: i64 = graph
            .metadata
            .iter()
            .find(|(k, _)| k == "opset")
            .and_then(|(_, v)| v.parse().ok())
            .expect("opset metadata");
        let options = onnx::ExportOptions {
            opset: source_opset.clamp(17, 21),
            ..onnx::ExportOptions::default()
        };
        match onnx::export(&graph, &options) {
            Ok(bytes) => std::fs::write(dir.join("export17.onnx"), bytes).expect("write export"),
            Err(e) => failures.push(format!("{}: export: {e}", case.name)),
        }
        reference_outputs.push(outputs);
    }

    let log = common::run_oracle(&py, "run_exported.py", &[&scratch.path(), &"export17.onnx"]);
    println!("{}", log.trim());
    for (case, outputs) in cases.iter().zip(&reference_outputs) {
        let dir = scratch.path().join(&case.name);
        if outputs.is_empty() || !dir.join("export17.onnx").exists() {
            continue;
        }
        if let Ok(error) = std::fs::read_to_string(dir.join("export17.error.txt")) {
            failures.push(format!("{}: exported model: {error}", case.name));
            continue;
        }
        // The exported model run by ONNX Runtime must agree with the reference run of the import.
        let exported: HashMap<String, Tensor> = case
            .outputs
            .iter()
            .map(|(n, f)| {
                (
                    n.clone(),
                    common::read_npy(&dir.join(format!("export17.{f}"))),
                )
            })
            .collect();
        for (name, got) in &exported {
            let err = common::relative_error(got, &outputs[name], name);
            if err > TOLERANCE {
                failures.push(format!(
                    "{}: exported model in ONNX Runtime vs reference: `{name}` relative error {err:.3e}",
                    case.name
                ));
            }
        }
    }
    println!("{} cases, {} failures", cases.len(), failures.len());
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}
