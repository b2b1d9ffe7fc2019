//! A naive integer convolution: the definition the kernels' accumulators must equal exactly.

use tao_kernels::Conv2dSpec;

/// `Σ x[n, oy*sh + ky*dh - top, ox*sw + kx*dw - left, g*cin_g + ci] · w[co][ci][ky][kx]` over the
/// window (zero outside the input), for a dense NHWC `input` of `batch` images and ONNX-order
/// `weights`; dense `[N, OH, OW, out_channels]` result. `None` when the spec has no valid output.
pub fn conv_reference_i32(
    spec: &Conv2dSpec,
    batch: usize,
    input: &[i8],
    weights: &[i8],
) -> Option<Vec<i32>> {
    let [oh, ow] = spec.output_size().ok()?;
    let [h, w] = spec.input_size;
    let (cin, cout, groups) = (spec.in_channels, spec.out_channels, spec.groups);
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    let [kh, kw] = spec.kernel;
    let mut out = vec![0i32; batch * oh * ow * cout];
    for n in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for co in 0..cout {
                    let g = co / cout_g;
                    let mut sum = 0i32;
                    for ky in 0..kh {
                        let y = (oy * spec.stride[0] + ky * spec.dilation[0]) as isize
                            - spec.padding.top as isize;
                        if y < 0 || y >= h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let x = (ox * spec.stride[1] + kx * spec.dilation[1]) as isize
                                - spec.padding.left as isize;
                            if x < 0 || x >= w as isize {
                                continue;
                            }
                            let pixel = ((n * h + y as usize) * w + x as usize) * cin;
                            for ci in 0..cin_g {
                                let xv = input[pixel + g * cin_g + ci] as i32;
                                let wv = weights[((co * cin_g + ci) * kh + ky) * kw + kx] as i32;
                                sum += xv * wv;
                            }
                        }
                    }
                    out[((n * oh + oy) * ow + ox) * cout + co] = sum;
                }
            }
        }
    }
    Some(out)
}
