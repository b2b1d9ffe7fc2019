//! Pooling, global pooling and layout conversion against straightforward references.

mod common;

use common::*;
use proptest::prelude::*;
use tao_kernels::{
    GlobalPoolKind, Nhwc, NhwcMut, Padding2d, Pool2dSpec, PoolKind, global_pool, nchw_to_nhwc,
    nhwc_to_nchw, pool2d,
};

fn pool_ref(spec: &Pool2dSpec, n: usize, h: usize, w: usize, c: usize, x: &[f32]) -> Vec<f64> {
    let [oh, ow] = spec.output_size([h, w]).expect("valid");
    let mut out = Vec::with_capacity(n * oh * ow * c);
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let (mut max, mut sum, mut valid, mut padded) =
                        (f64::NEG_INFINITY, 0.0, 0usize, 0usize);
                    for ky in 0..spec.kernel[0] {
                        let iy = (oy * spec.stride[0] + ky * spec.dilation[0]) as isize
                            - spec.padding.top as isize;
                        for kx in 0..spec.kernel[1] {
                            let ix = (ox * spec.stride[1] + kx * spec.dilation[1]) as isize
                                - spec.padding.left as isize;
                            if iy < (h + spec.padding.bottom) as isize
                                && ix < (w + spec.padding.right) as isize
                            {
                                padded += 1;
                            }
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let v = x[((img * h + iy as usize) * w + ix as usize) * c + ch] as f64;
                            max = max.max(v);
                            sum += v;
                            valid += 1;
                        }
                    }
                    out.push(match spec.kind {
                        PoolKind::Max => max,
                        PoolKind::Avg {
                            count_include_pad: true,
                        } => sum / padded as f64,
                        PoolKind::Avg {
                            count_include_pad: false,
                        } => sum / valid as f64,
                    });
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn pooling_matches_reference(
        kind in prop_oneof![Just(PoolKind::Max), Just(PoolKind::Avg { count_include_pad: true }), Just(PoolKind::Avg { count_include_pad: false })],
        kernel in [1usize..=4, 1usize..=4],
        stride in [1usize..=3, 1usize..=3],
        dilation in [1usize..=2, 1usize..=2],
        pads in [0usize..=3, 0usize..=3, 0usize..=3, 0usize..=3],
        ceil_mode in any::<bool>(),
        n in 1usize..=2,
        extra in [0usize..=8, 0usize..=8],
        c in 1usize..=37,
        seed in any::<u64>(),
    ) {
        let span = [dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1];
        let dilation = if matches!(kind, PoolKind::Max) { dilation } else { [1, 1] };
        let span = if matches!(kind, PoolKind::Max) { span } else { kernel };
        let padding = Padding2d {
            top: pads[0].min(span[0] - 1),
            left: pads[1].min(span[1] - 1),
            bottom: pads[2].min(span[0] - 1),
            right: pads[3].min(span[1] - 1),
        };
        let spec = Pool2dSpec { kind, kernel, stride, dilation, padding, ceil_mode };
        let (h, w) = (span[0] + extra[0], span[1] + extra[1]);
        let [oh, ow] = spec.output_size([h, w]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut rng = Rng(seed);
        let x = rng.vec(n * h * w * c);
        let want = pool_ref(&spec, n, h, w, c, &x);
        // Scale errors by the inputs: averages of values of both signs can cancel.
        let magnitude = vec![x.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)); want.len()];
        for ctx in contexts() {
            let mut out = vec![f32::NAN; n * oh * ow * c];
            pool2d(ctx, &spec, Nhwc::new(&x, [n, h, w, c]).map_err(|e| TestCaseError::fail(e.to_string()))?,
                NhwcMut::new(&mut out, [n, oh, ow, c]).map_err(|e| TestCaseError::fail(e.to_string()))?)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(rel_err_mag(&out, &want, &magnitude) <= 1e-6, "{:?}", ctx.isa());
        }
    }

    #[test]
    fn global_pooling_and_layouts_round_trip(n in 1usize..=3, h in 1usize..=9, w in 1usize..=9, c in 1usize..=70, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let nchw = rng.vec(n * c * h * w);
        for ctx in contexts() {
            let mut nhwc = vec![0f32; nchw.len()];
            nchw_to_nhwc(ctx, &nchw, NhwcMut::new(&mut nhwc, [n, h, w, c]).map_err(|e| TestCaseError::fail(e.to_string()))?)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for img in 0..n {
                for ch in 0..c {
                    for p in 0..h * w {
                        prop_assert_eq!(nhwc[(img * h * w + p) * c + ch], nchw[(img * c + ch) * h * w + p]);
                    }
                }
            }
            let mut back = vec![0f32; nchw.len()];
            nhwc_to_nchw(ctx, Nhwc::new(&nhwc, [n, h, w, c]).map_err(|e| TestCaseError::fail(e.to_string()))?, &mut back)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &nchw);
            for kind in [GlobalPoolKind::Avg, GlobalPoolKind::Max] {
                let mut out = vec![0f32; n * c];
                global_pool(ctx, kind, Nhwc::new(&nhwc, [n, h, w, c]).map_err(|e| TestCaseError::fail(e.to_string()))?,
                    NhwcMut::new(&mut out, [n, 1, 1, c]).map_err(|e| TestCaseError::fail(e.to_string()))?)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let want: Vec<f64> = (0..n * c).map(|i| {
                    let plane = &nchw[i * h * w..(i + 1) * h * w];
                    match kind {
                        GlobalPoolKind::Avg => plane.iter().map(|&v| v as f64).sum::<f64>() / (h * w) as f64,
                        GlobalPoolKind::Max => plane.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64)),
                    }
                }).collect();
                let magnitude = vec![nchw.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)); want.len()];
                prop_assert!(rel_err_mag(&out, &want, &magnitude) <= 1e-6);
            }
        }
    }
}

#[test]
fn pooling_shape_errors() {
    let spec = Pool2dSpec {
        kind: PoolKind::Max,
        kernel: [3, 3],
        stride: [2, 2],
        dilation: [1, 1],
        padding: Padding2d::uniform(3),
        ceil_mode: false,
    };
    assert!(
        spec.output_size([8, 8]).is_err(),
        "pads as large as the window are refused"
    );
    let spec = Pool2dSpec {
        padding: Padding2d::uniform(1),
        ..spec
    };
    assert_eq!(spec.output_size([8, 8]), Ok([4, 4]));
    assert_eq!(
        Pool2dSpec {
            ceil_mode: true,
            ..spec
        }
        .output_size([8, 8]),
        Ok([5, 5])
    );
    let ctx = &contexts()[0];
    let x = vec![0f32; 8 * 8 * 2];
    let mut out = vec![0f32; 3 * 3 * 2];
    assert!(
        pool2d(
            ctx,
            &spec,
            Nhwc::new(&x, [1, 8, 8, 2]).expect("v"),
            NhwcMut::new(&mut out, [1, 3, 3, 2]).expect("v")
        )
        .is_err()
    );
}
