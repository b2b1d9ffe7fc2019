//! Small UFF graphs written with the importer's schema structs, imported, run by the reference executor
//! and compared with TensorFlow semantics computed independently here (NHWC loops over HWIO filters,
//! TensorFlow's SAME padding rule), or with hand-computed values.

mod uff_support;

use tao_graph::ir::{Dim, Graph, InputOrder, Shape, Tensor};
use tao_graph::{reference, uff};
use uff_support::{HWIO, HWOI, NCHW, NHWC, UffWriter, ints, s};

// ---------------------------------------------------------------- helpers

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn import(w: &UffWriter) -> Graph {
    uff::import(&w.bytes(), None).unwrap_or_else(|e| panic!("import: {e}"))
}

fn run(graph: &Graph, input: &str, x: Tensor) -> Vec<(String, Tensor)> {
    reference::run(graph, &[(input, x)]).unwrap_or_else(|e| panic!("run: {e}"))
}

fn output<'a>(outputs: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &outputs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no output {name}"))
        .1
}

fn assert_close(actual: &Tensor, expected_shape: &[usize], expected: &[f32], what: &str) {
    assert_eq!(actual.shape(), expected_shape, "{what}: shape");
    let a = actual.to_f32_vec();
    let scale = expected.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(expected).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * scale.max(1.0),
            "{what}: element {i}: got {x}, expected {y}"
        );
    }
}

/// NHWC → NCHW (or any 4-D permutation), for building expectations.
fn permute4(x: &[f32], dims: [usize; 4], perm: [usize; 4]) -> (Vec<f32>, [usize; 4]) {
    let out_dims = perm.map(|p| dims[p]);
    let strides = [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1];
    let mut out = Vec::with_capacity(x.len());
    for a in 0..out_dims[0] {
        for b in 0..out_dims[1] {
            for c in 0..out_dims[2] {
                for d in 0..out_dims[3] {
                    let idx = [a, b, c, d];
                    let mut src = 0;
                    for k in 0..4 {
                        src += idx[k] * strides[perm[k]];
                    }
                    out.push(x[src]);
                }
            }
        }
    }
    (out, out_dims)
}

/// TensorFlow's SAME padding: (output size, pad before).
fn tf_same(input: usize, kernel: usize, stride: usize, dilation: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let effective = (kernel - 1) * dilation + 1;
    let total = ((out - 1) * stride + effective).saturating_sub(input);
    (out, total / 2)
}

struct ConvSpec {
    strides: [usize; 2],
    dilations: [usize; 2],
    /// (top, left) pads and output size (oh, ow).
    pad: [usize; 2],
    out: [usize; 2],
    groups: usize,
}

/// TensorFlow conv2d on NHWC data with an HWIO filter (I = C_in / groups), zero padding.
fn tf_conv(x: &[f32], xd: [usize; 4], f: &[f32], fd: [usize; 4], spec: &ConvSpec) -> Vec<f32> {
    let [n, h, w, c] = xd;
    let [kh, kw, ci, co] = fd;
    let g = spec.groups;
    assert_eq!(ci * g, c);
    let co_per_group = co / g;
    let [oh, ow] = spec.out;
    let mut out = vec![0f32; n * oh * ow * co];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..co {
                    let group = o / co_per_group;
                    let mut acc = 0f64;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * spec.strides[0] + ky * spec.dilations[0]) as isize
                                - spec.pad[0] as isize;
                            let ix = (ox * spec.strides[1] + kx * spec.dilations[1]) as isize
                                - spec.pad[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            for i in 0..ci {
                                let xc = group * ci + i;
                                let xv = x[((b * h + iy as usize) * w + ix as usize) * c + xc];
                                let fv = f[((ky * kw + kx) * ci + i) * co + o];
                                acc += f64::from(xv) * f64::from(fv);
                            }
                        }
                    }
                    out[((b * oh + oy) * ow + ox) * co + o] = acc as f32;
                }
            }
        }
    }
    out
}

/// TensorFlow depthwise_conv2d: filter `[kh, kw, C, M]`, output channel `c * M + m`.
fn tf_depthwise(x: &[f32], xd: [usize; 4], f: &[f32], fd: [usize; 4], spec: &ConvSpec) -> Vec<f32> {
    let [n, h, w, c] = xd;
    let [kh, kw, fc, m] = fd;
    assert_eq!(fc, c);
    let [oh, ow] = spec.out;
    let mut out = vec![0f32; n * oh * ow * c * m];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    for mm in 0..m {
                        let mut acc = 0f64;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy =
                                    (oy * spec.strides[0] + ky) as isize - spec.pad[0] as isize;
                                let ix =
                                    (ox * spec.strides[1] + kx) as isize - spec.pad[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((b * h + iy as usize) * w + ix as usize) * c + ch];
                                let fv = f[((ky * kw + kx) * c + ch) * m + mm];
                                acc += f64::from(xv) * f64::from(fv);
                            }
                        }
                        out[((b * oh + oy) * ow + ox) * c * m + ch * m + mm] = acc as f32;
                    }
                }
            }
        }
    }
    out
}

struct PoolSpec {
    kernel: [usize; 2],
    strides: [usize; 2],
    /// (top, left) pads and output size (oh, ow).
    pad: [usize; 2],
    out: [usize; 2],
    max: bool,
    /// None = padded cells are ignored (SAME); Some(0) = they are zeros that count (a Pad folded
    /// into a VALID pool).
    pad_value: Option<f32>,
}

/// TensorFlow max/avg pooling on NHWC.
fn tf_pool(x: &[f32], xd: [usize; 4], spec: &PoolSpec) -> Vec<f32> {
    let PoolSpec {
        kernel,
        strides,
        pad,
        out,
        max,
        pad_value,
    } = *spec;
    let [n, h, w, c] = xd;
    let [oh, ow] = out;
    let mut res = Vec::with_capacity(n * oh * ow * c);
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut acc: Vec<f32> = Vec::new();
                    for ky in 0..kernel[0] {
                        for kx in 0..kernel[1] {
                            let iy = (oy * strides[0] + ky) as isize - pad[0] as isize;
                            let ix = (ox * strides[1] + kx) as isize - pad[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                acc.extend(pad_value);
                                continue;
                            }
                            acc.push(x[((b * h + iy as usize) * w + ix as usize) * c + ch]);
                        }
                    }
                    res.push(if max {
                        acc.iter().fold(f32::MIN, |m, &v| m.max(v))
                    } else {
                        acc.iter().sum::<f32>() / acc.len() as f32
                    });
                }
            }
        }
    }
    res
}

// ---------------------------------------------------------------- convolution

#[test]
fn conv_on_nhwc_data_with_same_padding_and_stride() {
    let (xd, fd) = ([2, 7, 6, 3], [3, 3, 3, 4]);
    let (x, f) = (values(2 * 7 * 6 * 3, 1), values(3 * 3 * 3 * 4, 2));
    let mut w = UffWriter::new();
    let orders = w.orders(&[NHWC, HWIO]);
    w.input("image", &[-1, 7, 6, 3])
        .const_f32("conv/kernel", &fd, &f)
        .node(
            "conv/convolution",
            "Conv",
            &["image", "conv/kernel"],
            vec![
                ("inputs_orders", orders),
                ("strides", ints(&[2, 2])),
                ("dilation", ints(&[1, 1])),
                ("implicit_padding", s("same")),
            ],
        )
        .mark_output("conv/convolution");
    let graph = import(&w);
    assert_eq!(graph.inputs[0].layout, Some(InputOrder::Nhwc));
    let out = run(
        &graph,
        "image",
        Tensor::from_f32(xd.to_vec(), x.clone()).unwrap(),
    );
    let ((oh, top), (ow, left)) = (tf_same(7, 3, 2, 1), tf_same(6, 3, 2, 1));
    let spec = ConvSpec {
        strides: [2, 2],
        dilations: [1, 1],
        pad: [top, left],
        out: [oh, ow],
        groups: 1,
    };
    let expected = tf_conv(&x, xd, &f, fd, &spec);
    // The output stays NHWC, under the node's own name.
    assert_close(
        output(&out, "conv/convolution"),
        &[2, oh, ow, 4],
        &expected,
        "conv NHWC",
    );
}

#[test]
fn conv_on_nchw_data_with_explicit_padding_and_dilation() {
    let (xd_nhwc, fd) = ([1, 9, 8, 2], [3, 2, 2, 3]);
    let (x_nhwc, f) = (values(9 * 8 * 2, 3), values(3 * 2 * 2 * 3, 4));
    let (x_nchw, xd_nchw) = permute4(&x_nhwc, xd_nhwc, [0, 3, 1, 2]);
    let mut w = UffWriter::new();
    let orders = w.orders(&[NCHW, HWIO]);
    // The Input is written without the batch (CHW), as the format documents.
    w.input("x", &[2, 9, 8])
        .const_f32("k", &fd, &f)
        .node(
            "conv",
            "Conv",
            &["x", "k"],
            vec![
                ("inputs_orders", orders),
                ("strides", ints(&[1, 2])),
                ("dilation", ints(&[2, 1])),
                ("padding", ints(&[1, 2])),
            ],
        )
        .mark_output("conv");
    let graph = import(&w);
    assert_eq!(
        graph.inputs[0].shape,
        Shape::new(vec![
            Dim::sym("N"),
            Dim::Fixed(2),
            Dim::Fixed(9),
            Dim::Fixed(8)
        ])
    );
    let out = run(
        &graph,
        "x",
        Tensor::from_f32(xd_nchw.to_vec(), x_nchw).unwrap(),
    );
    // Explicit padding is symmetric per axis: out = (in + 2p - effective) / stride + 1.
    let oh = (9 + 2 - 5) + 1;
    let ow = (8 + 4 - 2) / 2 + 1;
    let spec = ConvSpec {
        strides: [1, 2],
        dilations: [2, 1],
        pad: [1, 2],
        out: [oh, ow],
        groups: 1,
    };
    let expected_nhwc = tf_conv(&x_nhwc, xd_nhwc, &f, fd, &spec);
    let (expected, dims) = permute4(&expected_nhwc, [1, oh, ow, 3], [0, 3, 1, 2]);
    assert_close(output(&out, "conv"), &dims, &expected, "conv NCHW");
    // The filter was rewritten in place to OIHW under its own name.
    assert_eq!(graph.constants["k"].shape(), [3, 2, 3, 2]);
}

#[test]
fn one_by_one_conv_without_padding_field_and_bias_add() {
    let (xd_nhwc, fd) = ([2, 5, 4, 3], [1, 1, 3, 2]);
    let (x_nhwc, f) = (values(2 * 5 * 4 * 3, 5), values(6, 6));
    let bias = [0.5f32, -0.25];
    let (x_nchw, xd_nchw) = permute4(&x_nhwc, xd_nhwc, [0, 3, 1, 2]);
    let mut w = UffWriter::new();
    let orders = w.orders(&[NCHW, HWIO]);
    w.input("x", &[-1, 3, 5, 4])
        .const_f32("k", &fd, &f)
        .const_f32("b", &[2, 1, 1], &bias)
        .node(
            "conv",
            "Conv",
            &["x", "k"],
            vec![("inputs_orders", orders), ("strides", ints(&[2, 2]))],
        )
        .node("biased", "Binary", &["conv", "b"], vec![("func", s("add"))])
        .mark_output("biased");
    let out = run(
        &import(&w),
        "x",
        Tensor::from_f32(xd_nchw.to_vec(), x_nchw).unwrap(),
    );
    let spec = ConvSpec {
        strides: [2, 2],
        dilations: [1, 1],
        pad: [0, 0],
        out: [3, 2],
        groups: 1,
    };
    let mut expected_nhwc = tf_conv(&x_nhwc, xd_nhwc, &f, fd, &spec);
    for (i, v) in expected_nhwc.iter_mut().enumerate() {
        *v += bias[i % 2];
    }
    let (expected, dims) = permute4(&expected_nhwc, [2, 3, 2, 2], [0, 3, 1, 2]);
    assert_close(output(&out, "biased"), &dims, &expected, "1x1 conv + bias");
}

#[test]
fn depthwise_conv_on_nhwc_data() {
    let (xd, fd) = ([1, 6, 5, 4], [3, 3, 4, 2]);
    let (x, f) = (values(6 * 5 * 4, 7), values(3 * 3 * 4 * 2, 8));
    let mut w = UffWriter::new();
    let orders = w.orders(&[NHWC, HWIO]);
    w.input("x", &[-1, 6, 5, 4])
        .const_f32("dw", &fd, &f)
        .node(
            "depthwise",
            "Conv",
            &["x", "dw"],
            vec![
                ("inputs_orders", orders),
                ("number_groups", uff::schema::data::Value::I(4)),
                ("strides", ints(&[1, 1])),
                ("implicit_padding", s("same")),
            ],
        )
        .mark_output("depthwise");
    let out = run(
        &import(&w),
        "x",
        Tensor::from_f32(xd.to_vec(), x.clone()).unwrap(),
    );
    let spec = ConvSpec {
        strides: [1, 1],
        dilations: [1, 1],
        pad: [1, 1],
        out: [6, 5],
        groups: 4,
    };
    let expected = tf_depthwise(&x, xd, &f, fd, &spec);
    assert_close(
        output(&out, "depthwise"),
        &[1, 6, 5, 8],
        &expected,
        "depthwise",
    );
}

#[test]
fn grouped_conv_on_nhwc_data() {
    // Two groups: filter I = C_in / 2.
    let (xd, fd) = ([1, 5, 5, 4], [3, 3, 2, 6]);
    let (x, f) = (values(5 * 5 * 4, 9), values(3 * 3 * 2 * 6, 10));
    let mut w = UffWriter::new();
    let orders = w.orders(&[NHWC, HWIO]);
    w.input("x", &[-1, 5, 5, 4])
        .const_f32("k", &fd, &f)
        .node(
            "grouped",
            "Conv",
            &["x", "k"],
            vec![
                ("inputs_orders", orders),
                ("number_groups", uff::schema::data::Value::I(2)),
                ("strides", ints(&[2, 2])),
                ("implicit_padding", s("same")),
            ],
        )
        .mark_output("grouped");
    let out = run(
        &import(&w),
        "x",
        Tensor::from_f32(xd.to_vec(), x.clone()).unwrap(),
    );
    let (oh, top) = tf_same(5, 3, 2, 1);
    let spec = ConvSpec {
        strides: [2, 2],
        dilations: [1, 1],
        pad: [top, top],
        out: [oh, oh],
        groups: 2,
    };
    let expected = tf_conv(&x, xd, &f, fd, &spec);
    assert_close(
        output(&out, "grouped"),
        &[1, oh, oh, 6],
        &expected,
        "grouped",
    );
}

#[test]
fn conv_transpose_on_nhwc_data_with_same_padding() {
    // TensorFlow conv2d_transpose = the gradient of a SAME conv: scatter every input pixel through
    // the kernel, then crop the begin pad the forward conv would have used.
    let (xd, fd) = ([1, 3, 4, 2], [3, 3, 5, 2]); // filter H, W, out, in
    let (x, f) = (values(3 * 4 * 2, 11), values(3 * 3 * 5 * 2, 12));
    let (oh, ow) = (6usize, 8usize);
    let mut w = UffWriter::new();
    let orders = w.orders(&[NHWC, HWOI]);
    w.input("x", &[-1, 3, 4, 2])
        .const_f32("k", &fd, &f)
        .const_i32("out_shape", &[4], &[1, oh as i32, ow as i32, 5])
        .node(
            "deconv",
            "ConvTranspose",
            &["x", "k", "out_shape"],
            vec![
                ("inputs_orders", orders),
                ("strides", ints(&[2, 2])),
                ("implicit_padding", s("same")),
            ],
        )
        .mark_output("deconv");
    let out = run(
        &import(&w),
        "x",
        Tensor::from_f32(xd.to_vec(), x.clone()).unwrap(),
    );
    let (_, top) = tf_same(oh, 3, 2, 1);
    let (_, left) = tf_same(ow, 3, 2, 1);
    let mut expected = vec![0f32; oh * ow * 5];
    for iy in 0..3 {
        for ix in 0..4 {
            for i in 0..2 {
                let xv = x[(iy * 4 + ix) * 2 + i];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let oy = (iy * 2 + ky) as isize - top as isize;
                        let ox = (ix * 2 + kx) as isize - left as isize;
                        if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                            continue;
                        }
                        for o in 0..5 {
                            expected[(oy as usize * ow + ox as usize) * 5 + o] +=
                                xv * f[((ky * 3 + kx) * 5 + o) * 2 + i];
                        }
                    }
                }
            }
        }
    }
    assert_close(
        output(&out, "deconv"),
        &[1, oh, ow, 5],
        &expected,
        "conv transpose",
    );
}

// ---------------------------------------------------------------- pooling

fn pool_graph(func: &str, padding: Vec<(&'static str, uff::schema::data::Value)>) -> UffWriter {
    let mut w = UffWriter::new();
    let orders = w.orders(&[NHWC]);
    let mut fields = vec![
        ("func", s(func)),
        ("kernel", ints(&[3, 3])),
        ("strides", ints(&[2, 2])),
        ("inputs_orders", orders),
    ];
    fields.extend(padding);
    w.input("x", &[-1, 7, 6, 3])
        .node("pool", "Pool", &["x"], fields)
        .mark_output("pool");
    w
}

#[test]
fn max_and_average_pooling_with_same_padding() {
    let xd = [2, 7, 6, 3];
    let x = values(2 * 7 * 6 * 3, 13);
    let ((oh, top), (ow, left)) = (tf_same(7, 3, 2, 1), tf_same(6, 3, 2, 1));
    for (func, max) in [("max", true), ("avg", false)] {
        let w = pool_graph(func, vec![("implicit_padding", s("same"))]);
        let out = run(
            &import(&w),
            "x",
            Tensor::from_f32(xd.to_vec(), x.clone()).unwrap(),
        );
        let spec = PoolSpec {
            kernel: [3, 3],
            strides: [2, 2],
            pad: [top, left],
            out: [oh, ow],
            max,
            pad_value: None,
        };
        let expected = tf_pool(&x, xd, &spec);
        assert_close(output(&out, "pool"), &[2, oh, ow, 3], &expected, func);
    }
}

#[test]
fn pooling_with_explicit_padding_counts_the_padded_zeros() {
    let xd = [2, 7, 6, 3];
    let x = values(2 * 7 * 6 * 3, 14);
    // (7 + 2 - 3) / 2 + 1 = 4 and (6 + 2 - 3) / 2 + 1 = 3
    for (func, max) in [("max", true), ("avg", false)] {
        let w = pool_graph(func, vec![("padding", ints(&[1, 1]))]);
        let out = run(
            &import(&w),
            "x",
            Tensor::from_f32(xd.to_vec(), x.clone()).unwrap(),
        );
        let spec = PoolSpec {
            kernel: [3, 3],
            strides: [2, 2],
            pad: [1, 1],
            out: [4, 3],
            max,
            pad_value: Some(0.0),
        };
        let expected = tf_pool(&x, xd, &spec);
        assert_close(output(&out, "pool"), &[2, 4, 3, 3], &expected, func);
    }
}

// ---------------------------------------------------------------- TAO-style BatchNorm, FC, softmax

#[test]
fn tao_batchnorm_chain_reshapes_constants_to_broadcast() {
    // What TAO writes for a Keras BatchNormalization on NCHW data: each [C] parameter reshaped to
    // [1, C, 1, 1], then x * (gamma * rsqrt(var + eps)) + (beta - mean * gamma * rsqrt(var + eps)).
    let c = 3;
    let (gamma, beta, mean, var) = (
        [1.5f32, 0.5, 2.0],
        [0.1f32, -0.2, 0.3],
        [0.2f32, -1.0, 0.5],
        [4.0f32, 0.25, 1.0],
    );
    let eps = 1e-3f32;
    let mut w = UffWriter::new();
    w.input("x", &[-1, 3, 2, 2]);
    for (name, v) in [
        ("gamma", gamma),
        ("beta", beta),
        ("mean", mean),
        ("var", var),
    ] {
        w.const_f32(name, &[c], &v)
            .const_i32(&format!("{name}_shape"), &[4], &[1, 3, 1, 1])
            .node(
                &format!("{name}_r"),
                "Reshape",
                &[name, &format!("{name}_shape")],
                vec![],
            );
    }
    w.const_f32("eps", &[], &[eps])
        .node(
            "var_eps",
            "Binary",
            &["var_r", "eps"],
            vec![("func", s("add"))],
        )
        .node("inv", "Unary", &["var_eps"], vec![("func", s("rsqrt"))])
        .node(
            "scale",
            "Binary",
            &["inv", "gamma_r"],
            vec![("func", s("mul"))],
        )
        .node(
            "x_scaled",
            "Binary",
            &["x", "scale"],
            vec![("func", s("mul"))],
        )
        .node(
            "mean_scaled",
            "Binary",
            &["mean_r", "scale"],
            vec![("func", s("mul"))],
        )
        .node(
            "shift",
            "Binary",
            &["beta_r", "mean_scaled"],
            vec![("func", s("sub"))],
        )
        .node(
            "bn",
            "Binary",
            &["x_scaled", "shift"],
            vec![("func", s("add"))],
        )
        .mark_output("bn");
    let x = values(2 * 3 * 2 * 2, 15);
    let out = run(
        &import(&w),
        "x",
        Tensor::from_f32(vec![2, 3, 2, 2], x.clone()).unwrap(),
    );
    let expected: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / 4) % 3;
            (v - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch]
        })
        .collect();
    assert_close(
        output(&out, "bn"),
        &[2, 3, 2, 2],
        &expected,
        "batchnorm chain",
    );
}

#[test]
fn uff_batchnorm_op_on_nhwc_data() {
    let mut w = UffWriter::new();
    let orders = w.orders(&[NHWC]);
    let (gamma, beta, mean, var) = ([2.0f32, 0.5], [0.0f32, 1.0], [1.0f32, -1.0], [1.0f32, 4.0]);
    w.input("x", &[-1, 2, 3, 2])
        .const_f32("g", &[2], &gamma)
        .const_f32("b", &[2], &beta)
        .const_f32("m", &[2], &mean)
        .const_f32("v", &[2], &var)
        .node(
            "bn",
            "BatchNorm",
            &["x", "g", "b", "m", "v"],
            vec![
                ("inputs_orders", orders),
                ("epsilon", uff::schema::data::Value::D(0.0)),
            ],
        )
        .mark_output("bn");
    let x = values(12, 16);
    let out = run(
        &import(&w),
        "x",
        Tensor::from_f32(vec![1, 2, 3, 2], x.clone()).unwrap(),
    );
    let expected: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = i % 2;
            (v - mean[ch]) / var[ch].sqrt() * gamma[ch] + beta[ch]
        })
        .collect();
    assert_close(
        output(&out, "bn"),
        &[1, 2, 3, 2],
        &expected,
        "BatchNorm NHWC",
    );
}

#[test]
fn keras_flatten_pattern_fully_connected_and_softmax() {
    // Flatten as Keras writes it: Reshape(x, Stack(StridedSlice(Shape(x), 0, 1, shrink), -1)); then
    // MatMul (FullyConnected, weights "CK"), bias, softmax over the classes of "N+C" data.
    let mut w = UffWriter::new();
    let fc_orders = w.orders(&[&[0, 1], &[1, 0]]);
    let softmax_orders = w.orders(&[NHWC]);
    let weights = values(12 * 5, 17);
    let bias = values(5, 18);
    w.input("x", &[-1, 2, 3, 2])
        .node("shape", "Shape", &["x"], vec![])
        .const_i32("b0", &[1], &[0])
        .const_i32("b1", &[1], &[1])
        .const_i32("one", &[1], &[1])
        .node(
            "batch",
            "StridedSlice",
            &["shape", "b0", "b1", "one"],
            vec![
                ("begin_mask", uff::schema::data::Value::I(0)),
                ("end_mask", uff::schema::data::Value::I(0)),
                ("shrink_axis_mask", uff::schema::data::Value::I(1)),
            ],
        )
        .const_i32("minus_one", &[], &[-1])
        .node(
            "target",
            "Stack",
            &["batch", "minus_one"],
            vec![("axis", uff::schema::data::Value::I(0))],
        )
        .node("flat", "Reshape", &["x", "target"], vec![])
        .const_f32("w", &[12, 5], &weights)
        .node(
            "fc",
            "FullyConnected",
            &["flat", "w"],
            vec![("inputs_orders", fc_orders)],
        )
        .const_f32("bias", &[5], &bias)
        .node(
            "logits",
            "Binary",
            &["fc", "bias"],
            vec![("func", s("add"))],
        )
        .node(
            "probs",
            "Softmax",
            &["logits"],
            vec![
                ("axis", uff::schema::data::Value::I(0)),
                ("inputs_orders", softmax_orders),
            ],
        )
        .mark_output("probs");
    let graph = import(&w);
    let x = values(3 * 12, 19);
    let out = run(
        &graph,
        "x",
        Tensor::from_f32(vec![3, 2, 3, 2], x.clone()).unwrap(),
    );
    let mut expected = Vec::new();
    for b in 0..3 {
        let logits: Vec<f32> = (0..5)
            .map(|k| {
                bias[k]
                    + (0..12)
                        .map(|c| x[b * 12 + c] * weights[c * 5 + k])
                        .sum::<f32>()
            })
            .collect();
        let max = logits.iter().fold(f32::MIN, |m, &v| m.max(v));
        let e: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        expected.extend(e.iter().map(|v| v / sum));
    }
    assert_close(
        output(&out, "probs"),
        &[3, 5],
        &expected,
        "flatten + fc + softmax",
    );
}

// ---------------------------------------------------------------- data movement

#[test]
fn concat_strided_slice_transpose_pad_and_friends() {
    let mut w = UffWriter::new();
    w.input("x", &[-1, 2, 3, 4])
        .node("relu", "Activation", &["x"], vec![("func", s("relu"))])
        .node(
            "both",
            "Concat",
            &["x", "relu"],
            vec![("axis", uff::schema::data::Value::I(3))],
        )
        // both[:, 1:, ::-1, 2:7:2] (begin mask on nothing, end mask on axis 1)
        .const_i32("begin", &[4], &[0, 1, -1, 2])
        .const_i32("end", &[4], &[0, 0, -4, 7])
        .const_i32("step", &[4], &[1, 1, -1, 2])
        .node(
            "sliced",
            "StridedSlice",
            &["both", "begin", "end", "step"],
            vec![
                ("begin_mask", uff::schema::data::Value::I(1)),
                ("end_mask", uff::schema::data::Value::I(3)),
                ("shrink_axis_mask", uff::schema::data::Value::I(0)),
            ],
        )
        .node(
            "t",
            "Transpose",
            &["sliced"],
            vec![("permutation", ints(&[0, 3, 1, 2]))],
        )
        .const_i32("pads", &[4, 2], &[0, 0, 0, 1, 1, 0, 0, 0])
        .node("padded", "Pad", &["t", "pads"], vec![])
        .mark_output("padded");
    let graph = import(&w);
    let x = values(2 * 2 * 3 * 4, 20);
    let out = run(
        &graph,
        "x",
        Tensor::from_f32(vec![2, 2, 3, 4], x.clone()).unwrap(),
    );
    let at = |b: usize, i: usize, j: usize, k: usize| -> f32 {
        if k < 4 {
            x[((b * 2 + i) * 3 + j) * 4 + k]
        } else {
            x[((b * 2 + i) * 3 + j) * 4 + k - 4].max(0.0)
        }
    };
    // sliced[b, i', j', k'] = both[b, 1 + i', 2 - j', 2 + 2k'] with shape [2, 1, 3, 3]
    // t = sliced transposed to [2, 3, 1, 3]; padded adds one after axis 1 and one before axis 2.
    let mut expected = Vec::new();
    for b in 0..2 {
        for k in 0..4 {
            for i in 0..2 {
                for j in 0..3 {
                    expected.push(if k < 3 && i == 1 {
                        at(b, 1, 2 - j, 2 + 2 * k)
                    } else {
                        0.0
                    });
                }
            }
        }
    }
    assert_close(
        output(&out, "padded"),
        &[2, 4, 2, 3],
        &expected,
        "slice/transpose/pad",
    );
}

#[test]
fn squeeze_expand_dims_reduce_argmax_gather_and_elementwise() {
    let mut w = UffWriter::new();
    w.input("x", &[-1, 4, 1])
        .node("sq", "Squeeze", &["x"], vec![("axes", ints(&[2]))])
        .node(
            "ex",
            "ExpandDims",
            &["sq"],
            vec![("axis", uff::schema::data::Value::I(1))],
        )
        .node(
            "mean",
            "Reduce",
            &["ex"],
            vec![
                ("func", s("mean")),
                ("axes", ints(&[2])),
                ("keepdims", uff::schema::data::Value::B(true)),
            ],
        )
        .node(
            "centred",
            "Binary",
            &["ex", "mean"],
            vec![("func", s("sub"))],
        )
        .node("sq2", "Unary", &["centred"], vec![("func", s("square"))])
        .node("r6", "Activation", &["sq2"], vec![("func", s("relu6"))])
        .node(
            "lrelu",
            "LeakyRelu",
            &["centred"],
            vec![("alpha", uff::schema::data::Value::D(0.1))],
        )
        .node(
            "argmax",
            "ArgMax",
            &["sq"],
            vec![("axis", uff::schema::data::Value::I(1))],
        )
        .const_i32("idx", &[2], &[3, 0])
        .node(
            "picked",
            "GatherV2",
            &["sq", "idx"],
            vec![("axis", uff::schema::data::Value::I(1))],
        )
        .mark_output("r6")
        .mark_output("lrelu")
        .mark_output("argmax")
        .mark_output("picked");
    let graph = import(&w);
    assert_eq!(graph.outputs, ["r6", "lrelu", "argmax", "picked"]);
    let x = [0.5f32, -3.0, 2.5, 1.0, -1.0, 4.0, 0.0, -5.0];
    let out = run(
        &graph,
        "x",
        Tensor::from_f32(vec![2, 4, 1], x.to_vec()).unwrap(),
    );
    let mut r6 = Vec::new();
    let mut lrelu = Vec::new();
    for row in x.chunks(4) {
        let mean = row.iter().sum::<f32>() / 4.0;
        for &v in row {
            let c = v - mean;
            r6.push((c * c).min(6.0));
            lrelu.push(if c > 0.0 { c } else { 0.1 * c });
        }
    }
    assert_close(output(&out, "r6"), &[2, 1, 4], &r6, "square + relu6");
    assert_close(output(&out, "lrelu"), &[2, 1, 4], &lrelu, "leaky relu");
    assert_eq!(output(&out, "argmax").to_i64_vec(), [2, 1]);
    assert_close(
        output(&out, "picked"),
        &[2, 2],
        &[1.0, 0.5, -5.0, -1.0],
        "gather",
    );
}

#[test]
fn activations_unaries_and_binaries_by_hand() {
    let mut w = UffWriter::new();
    w.input("x", &[-1, 4]);
    let cases: [(&str, &str, &str); 10] = [
        ("sigmoid", "Activation", "sigmoid"),
        ("tanh", "Activation", "tanh"),
        ("elu", "Activation", "elu"),
        ("selu", "Activation", "selu"),
        ("softsign", "Activation", "softsign"),
        ("softplus", "Activation", "softplus"),
        ("neg", "Unary", "neg"),
        ("abs", "Unary", "abs"),
        ("floor", "Unary", "floor"),
        ("exp", "Unary", "exp"),
    ];
    for (name, op, func) in cases {
        w.node(name, op, &["x"], vec![("func", s(func))])
            .mark_output(name);
    }
    w.const_f32("two", &[], &[2.0])
        .node("max", "Binary", &["x", "two"], vec![("func", s("max"))])
        .node("min", "Binary", &["x", "two"], vec![("func", s("min"))])
        .node("div", "Binary", &["x", "two"], vec![("func", s("div"))])
        .node("pow", "Binary", &["two", "x"], vec![("func", s("pow"))])
        .node("id", "Identity", &["pow"], vec![])
        .mark_output("max")
        .mark_output("min")
        .mark_output("div")
        .mark_output("id");
    let graph = import(&w);
    let x = [-1.5f32, 0.0, 0.75, 3.0];
    let out = run(
        &graph,
        "x",
        Tensor::from_f32(vec![1, 4], x.to_vec()).unwrap(),
    );
    let f = |g: fn(f32) -> f32| -> Vec<f32> { x.iter().map(|&v| g(v)).collect() };
    let selu = |v: f32| {
        1.050_701
            * if v > 0.0 {
                v
            } else {
                1.673_263_2 * (v.exp() - 1.0)
            }
    };
    let expected: [(&str, Vec<f32>); 14] = [
        ("sigmoid", f(|v| 1.0 / (1.0 + (-v).exp()))),
        ("tanh", f(f32::tanh)),
        ("elu", f(|v| if v > 0.0 { v } else { v.exp() - 1.0 })),
        ("selu", x.iter().map(|&v| selu(v)).collect()),
        ("softsign", f(|v| v / (1.0 + v.abs()))),
        ("softplus", f(|v| (1.0 + v.exp()).ln())),
        ("neg", f(|v| -v)),
        ("abs", f(f32::abs)),
        ("floor", f(f32::floor)),
        ("exp", f(f32::exp)),
        ("max", f(|v| v.max(2.0))),
        ("min", f(|v| v.min(2.0))),
        ("div", f(|v| v / 2.0)),
        ("id", f(|v| 2f32.powf(v))),
    ];
    for (name, values) in expected {
        assert_close(output(&out, name), &[1, 4], &values, name);
    }
}

#[test]
fn reshape_of_a_batched_tensor_keeps_the_batch() {
    // The file was written for batch 1: [1, 6] would be wrong for a batch of 3.
    let mut w = UffWriter::new();
    w.input("x", &[-1, 2, 3])
        .const_i32("shape", &[2], &[1, 6])
        .node("flat", "Reshape", &["x", "shape"], vec![])
        .node("flat2", "Flatten", &["x"], vec![])
        .mark_output("flat")
        .mark_output("flat2");
    let graph = import(&w);
    let x = values(18, 21);
    let out = run(
        &graph,
        "x",
        Tensor::from_f32(vec![3, 2, 3], x.clone()).unwrap(),
    );
    assert_close(output(&out, "flat"), &[3, 6], &x, "reshape");
    assert_close(output(&out, "flat2"), &[3, 6], &x, "flatten");
}

#[test]
fn names_are_kept_and_invented_names_do_not_collide() {
    let mut w = UffWriter::new();
    // A file tensor already named like the importer's own helper tensors.
    w.input("x", &[-1, 3])
        .node("y", "Activation", &["x"], vec![("func", s("relu6"))])
        .node(
            "y/uff_relu6_min",
            "Unary",
            &["y"],
            vec![("func", s("rsqrt"))],
        )
        .mark_output("y/uff_relu6_min");
    let graph = import(&w);
    assert!(graph.nodes.iter().any(|n| n.outputs == ["y"]));
    assert!(graph.nodes.iter().any(|n| n.outputs == ["y/uff_relu6_min"]));
    let out = run(
        &graph,
        "x",
        Tensor::from_f32(vec![1, 3], vec![4.0, 9.0, 16.0]).unwrap(),
    );
    assert_close(
        output(&out, "y/uff_relu6_min"),
        &[1, 3],
        &[0.5, 1.0 / 6f32.sqrt(), 1.0 / 6f32.sqrt()],
        "rsqrt",
    );
}

#[test]
fn fully_connected_with_default_orders_flattens_and_transposes_weights() {
    // Without orders a FullyConnected reads "NC" data and "KC" weights; 4-D data is flattened.
    let weights = values(3 * 8, 22);
    let mut w = UffWriter::new();
    w.input("x", &[-1, 2, 2, 2])
        .const_f32("w", &[3, 8], &weights)
        .node("fc", "FullyConnected", &["x", "w"], vec![])
        .node(
            "probs",
            "Softmax",
            &["fc"],
            vec![("axis", uff::schema::data::Value::I(0))],
        )
        .mark_output("fc")
        .mark_output("probs");
    let x = values(2 * 8, 23);
    let out = run(
        &import(&w),
        "x",
        Tensor::from_f32(vec![2, 2, 2, 2], x.clone()).unwrap(),
    );
    let mut expected = Vec::new();
    for b in 0..2 {
        for k in 0..3 {
            expected.push(
                (0..8)
                    .map(|c| x[b * 8 + c] * weights[k * 8 + c])
                    .sum::<f32>(),
            );
        }
    }
    assert_close(output(&out, "fc"), &[2, 3], &expected, "fc");
    // Without orders, axis 0 counts from the first dim after the batch: the classes.
    let mut probs = Vec::new();
    for row in expected.chunks(3) {
        let sum: f32 = row.iter().map(|v| v.exp()).sum();
        probs.extend(row.iter().map(|v| v.exp() / sum));
    }
    assert_close(output(&out, "probs"), &[2, 3], &probs, "softmax");
}

#[test]
fn conv_transpose_with_valid_padding_and_gather_v1() {
    // 1-D-like case by hand: x = [1, 2] on a 1x2 image, kernel 1x3 of ones, stride 2, VALID:
    // full output width (2 - 1) * 2 + 3 = 5: [1, 1, 1+2, 2, 2].
    let mut w = UffWriter::new();
    let orders = w.orders(&[NCHW, HWOI]);
    w.input("x", &[1, 1, 2])
        .const_f32("k", &[1, 3, 1, 1], &[1.0, 1.0, 1.0])
        .const_i32("out_shape", &[4], &[1, 1, 1, 5])
        .node(
            "up",
            "ConvTranspose",
            &["x", "k", "out_shape"],
            vec![("inputs_orders", orders), ("strides", ints(&[1, 2]))],
        )
        .const_i32("idx", &[3], &[0, 0, 0])
        .node("rows", "Gather", &["up", "idx"], vec![])
        .mark_output("up")
        .mark_output("rows");
    let out = run(
        &import(&w),
        "x",
        Tensor::from_f32(vec![1, 1, 1, 2], vec![1.0, 2.0]).unwrap(),
    );
    let up = [1.0, 1.0, 3.0, 2.0, 2.0];
    assert_close(
        output(&out, "up"),
        &[1, 1, 1, 5],
        &up,
        "conv transpose VALID",
    );
    // Gather (v1) picks along axis 0: three copies of the batch item.
    let rows: Vec<f32> = up.iter().cycle().take(15).copied().collect();
    assert_close(output(&out, "rows"), &[3, 1, 1, 5], &rows, "gather");
}

#[test]
fn reduce_over_no_axes_is_the_identity_and_keepdims_false_drops_axes() {
    let mut w = UffWriter::new();
    w.input("x", &[-1, 2, 3])
        .node(
            "same",
            "Reduce",
            &["x"],
            vec![
                ("func", s("sum")),
                ("axes", ints(&[])),
                ("keepdims", uff::schema::data::Value::B(false)),
            ],
        )
        .node(
            "rowmax",
            "Reduce",
            &["x"],
            vec![
                ("func", s("max")),
                ("axes", ints(&[-1])),
                ("keepdims", uff::schema::data::Value::B(false)),
            ],
        )
        .mark_output("same")
        .mark_output("rowmax");
    let x = [1.0f32, 5.0, -2.0, 0.5, -4.0, 3.0];
    let out = run(
        &import(&w),
        "x",
        Tensor::from_f32(vec![1, 2, 3], x.to_vec()).unwrap(),
    );
    assert_close(output(&out, "same"), &[1, 2, 3], &x, "empty axes");
    assert_close(
        output(&out, "rowmax"),
        &[1, 2],
        &[5.0, 3.0],
        "max over last axis",
    );
}
