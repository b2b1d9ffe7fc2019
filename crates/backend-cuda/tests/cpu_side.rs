//! What the backend does without a GPU: the probe says why there is none, the kernels compile with
//! NVRTC where NVRTC is installed, every lowering path computes what the reference computes, bad
//! programs are refused, and ops without a GPU kernel fail the build naming node and op.

mod common;

use tao_backend_cuda::program::DType;
use tao_backend_cuda::{CudaBackend, codec, emulate, exec, gpu, lower};
use tao_engine::backend::{BuildConfig, EngineError, Precision};
use tao_graph::ir::{DType as GDType, Dim, Graph, Node, Op, Shape, Tensor, UnaryOp, ValueInfo};
use tao_graph::ops::{
    AutoPad, BinaryOp, Concat, Conv, ConvTranspose, Flatten, Pad, Pool, PoolKind, Reduce,
    ReduceKind, Softmax, Transpose,
};

#[test]
fn probe_without_a_gpu_says_no_gpu() {
    match CudaBackend::probe() {
        Ok(backend) => {
            // On a GPU machine the probe succeeds and fingerprints the device.
            let f = tao_engine::backend::Backend::device(&backend);
            println!("GPU present: {f}");
            assert!(f.contains(" sm_") && f.contains("cudnn"), "{f}");
        }
        Err(e) => {
            let text = e.to_string();
            println!("{text}");
            assert!(text.starts_with("no GPU: "), "{text}");
            assert!(
                text.len() > "no GPU: ".len() + 10,
                "the reason is given: {text}"
            );
        }
    }
    // A device number past the end is refused the same way, never a panic.
    let err = CudaBackend::probe_device(1_000)
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.starts_with("no GPU: ")));
}

#[test]
fn int8_is_refused_with_the_reason() {
    let err = tao_backend_cuda::dtype_for(Precision::Int8).unwrap_err();
    assert!(err.to_string().contains("INT8"), "{err}");
    assert_eq!(BuildConfig::default().precision, Precision::Fp32);
}

#[test]
fn kernels_compile_with_nvrtc() {
    for dtype in [DType::F32, DType::F16] {
        match gpu::nvrtc_compile(exec::KERNEL_SOURCE, "sm_90", exec::kernel_defines(dtype)) {
            Ok(cubin) => {
                assert_eq!(&cubin[..4], b"\x7fELF", "a CUBIN is an ELF image");
                println!("{}: {} bytes of sm_90 code", dtype.name(), cubin.len());
            }
            Err(e) if e.contains("not installed") => {
                println!("SKIPPED: kernels_compile_with_nvrtc: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn input(name: &str, dims: &[usize]) -> ValueInfo {
    let mut shape = vec![Dim::sym("N")];
    shape.extend(dims.iter().map(|&d| Dim::Fixed(d)));
    ValueInfo::new(name, GDType::F32, Shape::new(shape))
}

fn constant(g: &mut Graph, name: &str, shape: Vec<usize>, seed: u64) -> String {
    let n = shape.iter().product();
    let t = Tensor::from_f32(shape, common::noise(n, seed, -0.5, 0.5)).unwrap();
    g.constants.insert(name.to_owned(), t);
    name.to_owned()
}

fn ints(g: &mut Graph, name: &str, v: Vec<i64>) -> String {
    g.constants.insert(name.to_owned(), Tensor::vec_i64(v));
    name.to_owned()
}

/// One graph through every op family the GPU path lowers, with layouts mixed on purpose.
fn zoo() -> Graph {
    let mut g = Graph::new("zoo");
    g.inputs.push(input("x", &[3, 10, 12]));
    let w1 = constant(&mut g, "w1", vec![8, 3, 3, 3], 1);
    let b1 = constant(&mut g, "b1", vec![8], 2);
    g.nodes.push(Node::new(
        "conv_same",
        Op::Conv(Conv {
            strides: vec![2, 2],
            auto_pad: AutoPad::SameUpper,
            group: 1,
            ..Conv::default()
        }),
        ["x", &w1, &b1],
        ["c1"],
    ));
    g.nodes.push(Node::new(
        "leaky",
        Op::Unary(UnaryOp::LeakyRelu { alpha: 0.1 }),
        ["c1"],
        ["a1"],
    ));
    g.nodes.push(Node::new(
        "avg",
        Op::Pool(Pool {
            kind: PoolKind::Average,
            kernel_shape: vec![3, 3],
            strides: vec![1, 1],
            dilations: vec![],
            pads: vec![1, 1, 1, 1],
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
            count_include_pad: false,
        }),
        ["a1"],
        ["p1"],
    ));
    g.nodes.push(Node::new(
        "max_ceil",
        Op::Pool(Pool {
            kind: PoolKind::Max,
            kernel_shape: vec![2, 2],
            strides: vec![2, 2],
            dilations: vec![],
            pads: vec![],
            auto_pad: AutoPad::NotSet,
            ceil_mode: true,
            count_include_pad: false,
        }),
        ["p1"],
        ["p2"],
    ));
    // Grouped, dilated convolution on the concatenation of two NHWC values.
    g.nodes.push(Node::new(
        "cat",
        Op::Concat(Concat { axis: 1 }),
        ["a1", "p1"],
        ["cat"],
    ));
    let w2 = constant(&mut g, "w2", vec![8, 8, 3, 3], 3);
    g.nodes.push(Node::new(
        "conv_group",
        Op::Conv(Conv {
            dilations: vec![2, 2],
            pads: vec![2, 2, 2, 2],
            group: 2,
            ..Conv::default()
        }),
        ["cat", &w2],
        ["c2"],
    ));
    let scale = constant(&mut g, "scale", vec![1, 8, 1, 1], 4);
    g.nodes.push(Node::new(
        "mul",
        Op::Binary(BinaryOp::Mul),
        ["c2", &scale],
        ["m2"],
    ));
    // Transposed convolution with pads and output padding, bias, ReLU.
    let wt = constant(&mut g, "wt", vec![8, 4, 3, 3], 5);
    let bt = constant(&mut g, "bt", vec![4], 6);
    g.nodes.push(Node::new(
        "deconv",
        Op::ConvTranspose(ConvTranspose {
            strides: vec![2, 2],
            pads: vec![1, 1, 1, 1],
            output_padding: vec![1, 1],
            group: 1,
            ..ConvTranspose::default()
        }),
        ["m2", &wt, &bt],
        ["d1"],
    ));
    g.nodes
        .push(Node::new("relu", Op::Unary(UnaryOp::Relu), ["d1"], ["r1"]));
    let axes23 = ints(&mut g, "axes23", vec![2, 3]);
    g.nodes.push(Node::new(
        "mean",
        Op::Reduce(Reduce {
            kind: ReduceKind::Mean,
            keepdims: false,
            noop_with_empty_axes: false,
        }),
        ["r1", &axes23],
        ["mean"],
    ));
    // Row-major paths: transpose, softmax over the last axis, strided slice, padding.
    g.nodes.push(Node::new(
        "nhwc",
        Op::Transpose(Transpose {
            perm: vec![0, 2, 3, 1],
        }),
        ["p2"],
        ["t1"],
    ));
    g.nodes.push(Node::new(
        "softmax",
        Op::Softmax(Softmax {
            axis: -1,
            log: false,
            coerce_to_2d: false,
        }),
        ["t1"],
        ["s1"],
    ));
    let starts = ints(&mut g, "starts", vec![0, 1]);
    let ends = ints(&mut g, "ends", vec![100, 100]);
    let axes = ints(&mut g, "sl_axes", vec![1, 2]);
    let steps = ints(&mut g, "sl_steps", vec![2, 1]);
    g.nodes.push(Node::new(
        "slice",
        Op::Slice,
        ["s1", &starts, &ends, &axes, &steps],
        ["sl"],
    ));
    let pads = ints(&mut g, "pads", vec![0, 1, 0, 2, 0, 0, 1, 0]);
    g.nodes.push(Node::new(
        "pad",
        Op::Pad(Pad::default()),
        ["sl", &pads],
        ["pd"],
    ));
    g.nodes.push(Node::new(
        "flatten",
        Op::Flatten(Flatten { axis: 1 }),
        ["pd"],
        ["fl"],
    ));
    // A strided 1×1 convolution (lowered as a gather, then a 1×1 convolution).
    let wp = constant(&mut g, "wp", vec![4, 8, 1, 1], 7);
    g.nodes.push(Node::new(
        "proj",
        Op::Conv(Conv {
            strides: vec![2, 2],
            group: 1,
            ..Conv::default()
        }),
        ["p1", &wp],
        ["pj"],
    ));
    g.nodes.push(Node::new(
        "gap",
        Op::GlobalPool(PoolKind::Average),
        ["c2"],
        ["gap"],
    ));
    g.nodes.push(Node::new(
        "sig",
        Op::Unary(UnaryOp::Sigmoid),
        ["gap"],
        ["sg"],
    ));
    g.outputs = vec![
        "mean".into(),
        "fl".into(),
        "sg".into(),
        "r1".into(),
        "pj".into(),
    ];
    g
}

#[test]
fn every_lowering_path_matches_the_reference() {
    let original = zoo();
    let mut graph = original.clone();
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let program = lower::lower(&graph, DType::F32, 3).unwrap();
    println!("{}", program.listing().join("\n"));
    let listing = program.listing();
    assert!(
        listing.iter().any(|s| s.starts_with("pad ")),
        "SAME_UPPER with stride 2 pads asymmetrically: an explicit pad step"
    );
    assert!(
        listing.iter().any(|s| s.contains("/subsample-for/proj")),
        "the strided 1x1 convolution gathers its pixels first"
    );
    let x = common::random_input(&[3, 3, 10, 12], 11);
    let want = tao_graph::reference::run(&original, &[("x", x.clone())]).unwrap();
    for batch in [3, 2] {
        let n = 3 * 10 * 12 * batch;
        let got = emulate::run(&program, batch, &[&x.as_f32().unwrap()[..n]]).unwrap();
        for ((name, w), g) in want.iter().zip(&got) {
            let w = w.as_f32().unwrap();
            let per = w.len() / 3;
            let err = common::relative_error(g, &w[..per * batch]);
            println!("batch {batch} {name}: {err:.2e}");
            assert!(err < 1e-5, "{name} at batch {batch}: {err:e}");
        }
    }
    // FP16 storage stays close; the input gets zero channels up to 8 for the tensor cores.
    let half = lower::lower(&graph, DType::F16, 3).unwrap();
    assert_eq!(half.values[0].shape, [1, 8, 10, 12], "{:?}", half.values[0]);
    let got = emulate::run(&half, 3, &[x.as_f32().unwrap()]).unwrap();
    for ((name, w), g) in want.iter().zip(&got) {
        let err = common::relative_error(g, w.as_f32().unwrap());
        println!("fp16 {name}: {err:.2e}");
        assert!(err < 2e-2, "fp16 {name}: {err:e}");
    }
}

#[test]
fn ops_without_a_gpu_kernel_fail_the_build_by_name() {
    let mut g = Graph::new("matmul");
    g.inputs.push(input("x", &[4, 5]));
    let w = constant(&mut g, "w", vec![5, 6], 1);
    g.nodes
        .push(Node::new("project", Op::MatMul, ["x", &w], ["y"]));
    g.outputs = vec!["y".into()];
    let err = lower::lower(&g, DType::F32, 1).unwrap_err();
    match &err {
        EngineError::Node { node, op, detail } => {
            assert_eq!((node.as_str(), op.as_str()), ("project", "MatMul"));
            assert!(detail.contains("CUDA backend"), "{detail}");
        }
        other => panic!("expected a node error, got {other}"),
    }
    println!("{err}");

    // A reshape that folds the batch into another axis cannot run per image.
    let mut g = Graph::new("batch_mixing");
    g.inputs.push(input("x", &[2, 3]));
    let shape = ints(&mut g, "shape", vec![-1]);
    g.nodes.push(Node::new(
        "fold",
        Op::Reshape(Default::default()),
        ["x", &shape],
        ["y"],
    ));
    g.outputs = vec!["y".into()];
    let err = lower::lower(&g, DType::F32, 1).unwrap_err().to_string();
    assert!(err.contains("fold") && err.contains("batch"), "{err}");
}

#[test]
fn damaged_programs_are_refused_without_panicking() {
    let mut graph = zoo();
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let program = lower::lower(&graph, DType::F16, 2).unwrap();
    let bytes = codec::encode(&program);
    assert_eq!(
        codec::decode(&bytes, program.weights.clone()).unwrap(),
        program
    );
    for cut in (0..bytes.len()).step_by(7) {
        assert!(
            codec::decode(&bytes[..cut], program.weights.clone()).is_err(),
            "cut {cut}"
        );
    }
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut bad = bytes.clone();
        let at = (x as usize) % bad.len();
        bad[at] ^= 1 << ((x >> 32) % 8);
        // Either refused, or still a program whose every index stays inside its buffers.
        if let Ok(p) = codec::decode(&bad, program.weights.clone()) {
            codec::validate(&p).unwrap();
        }
    }
    // A weight section of the wrong size is refused.
    assert!(codec::decode(&bytes, vec![0; 3]).is_err());
}

/// Every (output, a, b) offset triple of a map, in the map's own order, sorted.
fn triples(dims: &[usize], dst: &[i64], a: &[i64], b: &[i64]) -> Vec<(i64, i64, i64)> {
    let mut out = vec![(0i64, 0i64, 0i64)];
    for k in 0..dims.len() {
        let mut next = Vec::new();
        for &(d, x, y) in &out {
            for c in 0..dims[k] as i64 {
                next.push((d + c * dst[k], x + c * a[k], y + c * b[k]));
            }
        }
        out = next;
    }
    out.sort_unstable();
    out
}

/// NHWC gather of every other pixel: [N, C, H/2, W/2] from [N, C, H, W].
fn nhwc_gather(c: usize, h: usize, w: usize) -> tao_backend_cuda::program::Map {
    let (oh, ow) = (h / 2, w / 2);
    tao_backend_cuda::program::Map {
        dims: vec![1, c, oh, ow],
        dst: vec![(oh * ow * c) as i64, 1, (ow * c) as i64, c as i64],
        a: vec![(h * w * c) as i64, 1, (2 * w * c) as i64, (2 * c) as i64],
        b: vec![],
        ..Default::default()
    }
}

#[test]
fn walking_order_visits_the_same_elements_with_the_output_contiguous_innermost() {
    use tao_backend_cuda::program::Map;
    let (c, h, w) = (6usize, 8usize, 10usize);
    let (oh, ow) = (h / 2, w / 2);
    let gather = nhwc_gather(c, h, w);
    let walk = gather.walk(3);
    assert_eq!(walk.dst.last(), Some(&1), "{walk:?}");
    assert!(walk.dims.len() <= 3, "batch and rows merge: {walk:?}");
    let zeros = |n: usize| vec![0i64; n];
    assert_eq!(
        triples(&walk.dims, &walk.dst, &walk.a, &walk.b),
        triples(&[3, c, oh, ow], &gather.dst, &gather.a, &zeros(4))
    );
    // Random maps: broadcast operands, negative strides, size-1 dimensions.
    let mut x = 0x9e37_79b9u64;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    for _ in 0..500 {
        let rank = 1 + next(5) as usize;
        let dims: Vec<usize> = (0..rank)
            .map(|k| if k == 0 { 1 } else { 1 + next(4) as usize })
            .collect();
        let mut strides = || -> Vec<i64> { (0..rank).map(|_| next(7) as i64 - 2).collect() };
        let map = Map {
            dims: dims.clone(),
            dst: strides(),
            a: strides(),
            b: strides(),
            ..Map::default()
        };
        let batch = 1 + next(3) as usize;
        let w = map.walk(batch);
        let mut full = dims.clone();
        full[0] = batch;
        assert_eq!(
            triples(&w.dims, &w.dst, &w.a, &w.b),
            triples(&full, &map.dst, &map.a, &map.b),
            "{map:?} at batch {batch} walked as {w:?}"
        );
    }
}

/// A stride-2 first convolution with a large kernel on few channels, then a ReLU.
fn stem(channels: usize, height: usize, width: usize, kernel: usize, conv: Conv) -> Graph {
    let mut g = Graph::new("stem");
    g.inputs.push(input("x", &[channels, height, width]));
    let w = constant(&mut g, "w", vec![16, channels, kernel, kernel], 21);
    let b = constant(&mut g, "b", vec![16], 22);
    g.nodes
        .push(Node::new("stem_conv", Op::Conv(conv), ["x", &w, &b], ["c"]));
    g.nodes.push(Node::new(
        "stem_relu",
        Op::Unary(UnaryOp::Relu),
        ["c"],
        ["y"],
    ));
    g.outputs = vec!["y".into()];
    g
}

#[test]
fn stride_two_stems_run_as_space_to_depth_and_match_the_reference() {
    let stride2 = |pads: &[usize], auto_pad: AutoPad| Conv {
        strides: vec![2, 2],
        pads: pads.to_vec(),
        auto_pad,
        group: 1,
        ..Conv::default()
    };
    let explicit = AutoPad::NotSet;
    // ([channels, height, width, kernel], convolution, rewritten)
    let cases = [
        // DetectNet_v2's conv1 (7×7/2, pad 3) on even and odd sizes.
        ([3, 14, 18, 7], stride2(&[3, 3, 3, 3], explicit), true),
        ([3, 13, 11, 7], stride2(&[3, 3, 3, 3], explicit), true),
        // Even leading padding, one channel, asymmetric padding from SAME_UPPER.
        ([1, 9, 10, 5], stride2(&[2, 2, 2, 2], explicit), true),
        ([4, 12, 11, 7], stride2(&[], AutoPad::SameUpper), true),
        ([2, 10, 11, 6], stride2(&[1, 1, 2, 2], explicit), true),
        // Width 9 with leading pad 2: the last input column would fall into the stride-1
        // convolution's padding, so the rewrite is refused (and the plain path still matches).
        ([2, 10, 9, 6], stride2(&[1, 2, 2, 1], explicit), false),
    ];
    for ([c, h, w, k], conv, rewritten) in cases {
        let original = stem(c, h, w, k, conv);
        let mut graph = original.clone();
        tao_engine::optimize::optimize(&mut graph).unwrap();
        // Throughput counts the model's own work, not the rewrite's zero taps and channels.
        let oh = lower::lower(&graph, DType::F32, 1).unwrap().outputs[0].shape[1..].to_vec();
        assert_eq!(
            lower::model_macs_per_image(&graph).unwrap(),
            (16 * oh[0] * oh[1] * c * k * k) as u64
        );
        let x = common::random_input(&[2, c, h, w], 31);
        let want = tao_graph::reference::run(&original, &[("x", x.clone())]).unwrap();
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 1e-2)] {
            let program = lower::lower(&graph, dtype, 2).unwrap();
            let listing = program.listing();
            assert_eq!(
                listing[0].starts_with("cast-in-space-to-depth"),
                rewritten,
                "{c}x{h}x{w} k{k}: {listing:#?}"
            );
            let conv = program
                .steps
                .iter()
                .find_map(|s| match s {
                    tao_backend_cuda::program::Step::Conv { geom, .. } => Some(*geom),
                    _ => None,
                })
                .unwrap();
            if rewritten {
                assert_eq!(conv.stride, [1, 1]);
                assert_eq!(conv.kernel, [k.div_ceil(2); 2]);
            }
            let encoded = codec::encode(&program);
            assert_eq!(
                codec::decode(&encoded, program.weights.clone()).unwrap(),
                program
            );
            for batch in [2, 1] {
                let n = c * h * w * batch;
                let got = emulate::run(&program, batch, &[&x.as_f32().unwrap()[..n]]).unwrap();
                let wv = want[0].1.as_f32().unwrap();
                let err = common::relative_error(&got[0], &wv[..wv.len() / 2 * batch]);
                println!("{} {c}x{h}x{w} k{k} batch {batch}: {err:.2e}", dtype.name());
                assert!(err < tol, "{c}x{h}x{w} k{k} {}: {err:e}", dtype.name());
            }
        }
    }
    // A 3×3 stride-2 convolution stays as it is (the rewrite would cost 16/9 the work).
    let small = stem(3, 10, 12, 3, stride2(&[1, 1, 1, 1], explicit));
    let program = lower::lower(&small, DType::F16, 1).unwrap();
    assert!(!program.listing()[0].contains("space-to-depth"));
}

#[test]
fn copies_move_sixteen_bytes_where_rows_allow() {
    use tao_backend_cuda::program::Map;
    // The NHWC gather before a strided 1×1 convolution: 64 channels of FP16 per pixel.
    let (c, h, w) = (64usize, 8usize, 10usize);
    let (oh, ow) = (h / 2, w / 2);
    let gather = nhwc_gather(c, h, w);
    let walk = gather.walk(3);
    let (v, d_off, a_off) = walk.vectorised(8, 0, 0).expect("64 channels are 8 vectors");
    assert_eq!((d_off, a_off), (0, 0));
    assert_eq!(v.dims.iter().product::<usize>() * 8, 3 * c * oh * ow);
    // Every element is covered once: expand the vectors back into elements.
    let mut elements: Vec<(i64, i64)> = triples(&v.dims, &v.dst, &v.a, &v.b)
        .into_iter()
        .flat_map(|(d, a, _)| (0..8).map(move |e| (d * 8 + e, a * 8 + e)))
        .collect();
    elements.sort_unstable();
    let zeros = vec![0i64; 4];
    let want: Vec<(i64, i64)> = triples(&[3, c, oh, ow], &gather.dst, &gather.a, &zeros)
        .into_iter()
        .map(|(d, a, _)| (d, a))
        .collect();
    assert_eq!(elements, want);
    // Rows of 6 channels, odd offsets or a transposing map stay element by element.
    assert!(walk.vectorised(8, 4, 0).is_none());
    let narrow = Map {
        dims: vec![1, 6, oh, ow],
        dst: vec![(oh * ow * 6) as i64, 1, (ow * 6) as i64, 6],
        a: vec![(h * w * 6) as i64, 1, (2 * w * 6) as i64, 12],
        ..Map::default()
    };
    assert!(narrow.walk(1).vectorised(8, 0, 0).is_none());
    let transpose = Map {
        dims: vec![1, 16, 16],
        dst: vec![256, 16, 1],
        a: vec![256, 1, 16],
        ..Map::default()
    };
    assert!(transpose.walk(1).vectorised(8, 0, 0).is_none());
}

#[test]
fn classifier_heads_run_as_cublaslt_matmuls_and_match_the_reference() {
    use tao_graph::ops::Gemm;
    // Global pool, flatten, Gemm (transposed B, alpha, beta·C) + ReLU, MatMul, softmax.
    let mut g = Graph::new("head");
    g.inputs.push(input("x", &[6, 4, 4]));
    g.nodes.push(Node::new(
        "gap",
        Op::GlobalPool(PoolKind::Average),
        ["x"],
        ["p"],
    ));
    g.nodes.push(Node::new(
        "flat",
        Op::Flatten(Flatten { axis: 1 }),
        ["p"],
        ["f"],
    ));
    let w1 = constant(&mut g, "w1", vec![8, 6], 41);
    let c1 = constant(&mut g, "c1", vec![8], 42);
    g.nodes.push(Node::new(
        "fc1",
        Op::Gemm(Gemm {
            alpha: 0.5,
            beta: 2.0,
            trans_a: false,
            trans_b: true,
        }),
        ["f", &w1, &c1],
        ["h"],
    ));
    g.nodes
        .push(Node::new("relu", Op::Unary(UnaryOp::Relu), ["h"], ["r"]));
    let w2 = constant(&mut g, "w2", vec![8, 5], 43);
    g.nodes
        .push(Node::new("fc2", Op::MatMul, ["r", &w2], ["logits"]));
    g.nodes.push(Node::new(
        "prob",
        Op::Softmax(Softmax {
            axis: 1,
            log: false,
            coerce_to_2d: false,
        }),
        ["logits"],
        ["y"],
    ));
    g.outputs = vec!["y".into(), "logits".into()];
    let x = common::random_input(&[3, 6, 4, 4], 44);
    let want = tao_graph::reference::run(&g, &[("x", x.clone())]).unwrap();
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 1e-2)] {
        let program = lower::lower(&g, dtype, 3).unwrap();
        let listing = program.listing();
        assert!(
            listing.iter().any(|s| s.starts_with("gemm fc1 -> r +act1")),
            "the ReLU rides on the first matmul: {listing:#?}"
        );
        assert!(listing.iter().any(|s| s.starts_with("gemm fc2 -> logits")));
        assert!(!listing.iter().any(|s| s.starts_with("unary1")));
        let encoded = codec::encode(&program);
        assert_eq!(
            codec::decode(&encoded, program.weights.clone()).unwrap(),
            program
        );
        for batch in [3, 1] {
            let n = 6 * 16 * batch;
            let got = emulate::run(&program, batch, &[&x.as_f32().unwrap()[..n]]).unwrap();
            for ((name, w), gv) in want.iter().zip(&got) {
                let w = w.as_f32().unwrap();
                let err = common::relative_error(gv, &w[..w.len() / 3 * batch]);
                println!("{} batch {batch} {name}: {err:.2e}", dtype.name());
                assert!(err < tol, "{} {name}: {err:e}", dtype.name());
            }
        }
    }
    // A computed right-hand side has no cuBLASLt step: refused by name.
    let mut g2 = Graph::new("computed");
    g2.inputs.push(input("a", &[4]));
    g2.inputs.push(input("b", &[4]));
    g2.nodes
        .push(Node::new("outer", Op::MatMul, ["a", "b"], ["y"]));
    g2.outputs = vec!["y".into()];
    let err = lower::lower(&g2, DType::F32, 1).unwrap_err().to_string();
    assert!(err.contains("outer"), "{err}");
}

#[test]
fn detectnet_decode_follows_the_element_formula() {
    use tao_backend_cuda::detectnet::{Candidate, DecodeParams, decode_cpu, sort};
    // Two images, two classes on a 2×3 grid with stride 16 over a 48×32 input.
    let p = DecodeParams {
        classes: 2,
        grid_width: 3,
        grid_height: 2,
        stride_x: 16.0,
        stride_y: 16.0,
        box_norm: 10.0,
        input_width: 48.0,
        input_height: 32.0,
        thresholds: vec![0.5, 0.2],
    };
    let cells = 6;
    let mut cov = vec![0.0f32; 2 * 2 * cells];
    let mut boxes = vec![0.0f32; 2 * 8 * cells];
    // Image 1, class 0, cell (1, 2): centre (32.5, 16.5), offsets 1, 0.5, 2, 3 × 10.
    cov[2 * cells + 5] = 0.9;
    for (k, o) in [1.0, 0.5, 2.0, 3.0].iter().enumerate() {
        boxes[(8 + k) * cells + 5] = *o;
    }
    // Class 1 of image 0 at cell 0 clears its lower threshold; its box is clipped at 0.
    cov[cells] = 0.3;
    for k in 0..4 {
        boxes[(4 + k) * cells] = 5.0;
    }
    // At the threshold, below it and NaN: no candidate.
    cov[1] = 0.5;
    cov[2] = f32::NAN;
    cov[cells + 1] = 0.1;
    let got = decode_cpu(&cov, &boxes, 2, &p).unwrap();
    let want = vec![
        Candidate {
            image: 0,
            class_id: 1,
            cell: 0,
            confidence: 0.3,
            x: 0.0,
            y: 0.0,
            width: 50.5f32.min(48.0),
            height: 32.0,
        },
        Candidate {
            image: 1,
            class_id: 0,
            cell: 5,
            confidence: 0.9,
            x: 22.5,
            y: 11.5,
            width: 48.0 - 22.5,
            height: 32.0 - 11.5,
        },
    ];
    assert_eq!(got, want);
    let mut shuffled = vec![want[1], want[0]];
    sort(&mut shuffled);
    assert_eq!(shuffled, want);
    // Bad parameters are errors, not panics.
    let too_many = DecodeParams {
        classes: 17,
        ..p.clone()
    };
    assert!(decode_cpu(&cov, &boxes, 2, &too_many).is_err());
    let wrong_thresholds = DecodeParams {
        thresholds: vec![0.1, 0.2, 0.3],
        ..p.clone()
    };
    assert!(decode_cpu(&cov, &boxes, 2, &wrong_thresholds).is_err());
    assert!(decode_cpu(&cov[..5], &boxes, 2, &p).is_err());
}
