//! FPENet (TAO facial landmarks, 80×80 gray input) from its convolution layers up to
//! `conv_keypoints_m80`, run on real weights; shared by `conv_bench` and `tests/fpenet_e2e.rs`.
//!
//! The encoder is four 3×3 conv + ReLU + 2×2/2 max-pool stages at 64 channels, then three convs
//! at 5×5; the decoder has four 2×2/2 transposed convs, each concatenated with the matching
//! encoder activation (channels `[upsampled, skip]`) and followed by a 3×3 and a 1×1 conv with
//! ReLU; a 1×1 conv gives 80 heat maps. The concatenations cost nothing: both producers write
//! their halves of a 128-channel NHWC buffer directly through views with pixel stride 128.
#![allow(dead_code)]

use std::collections::HashMap;
use tao_kernels::{
    Activation, Context, Conv2dSpec, ConvTranspose2dSpec, Epilogue, Nhwc, NhwcMut, Padding2d,
    Pool2dSpec, PoolKind, PrepareOptions, PreparedConv, PreparedConvTranspose, Residual,
    ResidualAdd, nchw_to_nhwc, nhwc_to_nchw, pool2d,
};

pub const SIZE: usize = 80;
const C: usize = 64;
/// The heat-map convolution's channels.
pub const KEYPOINTS: usize = 80;

/// Prepared operators of FPENet, by ONNX node name.
pub struct FpeNet {
    convs: HashMap<&'static str, PreparedConv>,
    deconvs: Vec<PreparedConvTranspose>,
    scratch_len: usize,
}

/// The 3×3 / 1×1 convolutions: name, input channels, output channels, kernel, input size, ReLU.
const CONVS: [(&str, usize, usize, usize, usize, bool); 16] = [
    ("block_1a_conv_1", 1, C, 3, 80, true),
    ("block_2a_conv_1", C, C, 3, 40, true),
    ("block_3a_conv_1", C, C, 3, 20, true),
    ("block_4a_conv_1", C, C, 3, 10, true),
    ("block_5a_conv_1", C, C, 3, 5, true),
    ("block_5a_conv_2", C, C, 3, 5, true),
    ("block_5a_conv_3", C, C, 1, 5, true),
    ("block_6a_conv_1", 2 * C, C, 3, 10, true),
    ("block_6a_conv_2", C, C, 1, 10, true),
    ("block_7a_conv_1", 2 * C, C, 3, 20, true),
    ("block_7a_conv_2", C, C, 1, 20, true),
    ("block_8a_conv_1", 2 * C, C, 3, 40, true),
    ("block_8a_conv_2", C, C, 1, 40, true),
    ("block_9a_conv_1", 2 * C, C, 3, 80, true),
    ("block_9a_conv_2", C, C, 1, 80, true),
    ("conv_keypoints_m80", C, KEYPOINTS, 1, 80, false),
];

/// The transposed convolutions (2×2, stride 2, VALID): name and input size.
const DECONVS: [(&str, usize); 4] = [
    ("conv2d_transpose_1", 5),
    ("conv2d_transpose_2", 10),
    ("conv2d_transpose_3", 20),
    ("conv2d_transpose_4", 40),
];

/// Multiply-adds of one image through all convolutions.
pub fn macs() -> u64 {
    let conv: u64 = CONVS
        .iter()
        .map(|&(_, ci, co, k, s, _)| (s * s * ci * co * k * k) as u64)
        .sum();
    let deconv: u64 = DECONVS
        .iter()
        .map(|&(_, s)| (s * s * C * C * 4) as u64)
        .sum();
    conv + deconv
}

pub fn conv_spec(cin: usize, cout: usize, kernel: usize, size: usize, relu: bool) -> Conv2dSpec {
    let mut spec = Conv2dSpec::new(cin, cout, kernel, 1, kernel / 2, [size, size]);
    spec.epilogue = Epilogue::new(
        if relu {
            Activation::Relu
        } else {
            Activation::None
        },
        ResidualAdd::None,
    );
    spec
}

pub fn deconv_spec(size: usize) -> ConvTranspose2dSpec {
    ConvTranspose2dSpec {
        in_channels: C,
        out_channels: C,
        groups: 1,
        kernel: [2, 2],
        stride: [2, 2],
        dilation: [1, 1],
        padding: Padding2d::default(),
        output_padding: [0, 0],
        input_size: [size, size],
        epilogue: Epilogue::default(),
    }
}

const POOL: Pool2dSpec = Pool2dSpec {
    kind: PoolKind::Max,
    kernel: [2, 2],
    stride: [2, 2],
    dilation: [1, 1],
    padding: Padding2d {
        top: 0,
        left: 0,
        bottom: 0,
        right: 0,
    },
    ceil_mode: false,
};

impl FpeNet {
    /// Prepares every layer from `weights` (ONNX order, by node name).
    pub fn prepare(
        ctx: &Context,
        weights: &HashMap<String, (Vec<f32>, Vec<f32>)>,
        options: PrepareOptions,
    ) -> Result<FpeNet, String> {
        let get = |name: &str| weights.get(name).ok_or(format!("no weights for {name}"));
        let mut convs = HashMap::new();
        for &(name, cin, cout, k, size, relu) in &CONVS {
            let (w, b) = get(name)?;
            let spec = conv_spec(cin, cout, k, size, relu);
            // A forced algorithm applies where it can.
            let algorithm = options.algorithm.filter(|a| {
                PreparedConv::prepare(
                    &spec,
                    w,
                    None,
                    PrepareOptions {
                        algorithm: Some(*a),
                    },
                )
                .is_ok()
            });
            let conv = PreparedConv::prepare(&spec, w, Some(b), PrepareOptions { algorithm })
                .map_err(|e| format!("{name}: {e}"))?;
            convs.insert(name, conv);
        }
        let mut deconvs = Vec::new();
        for &(name, size) in &DECONVS {
            let (w, b) = get(name)?;
            deconvs.push(
                PreparedConvTranspose::prepare(&deconv_spec(size), w, Some(b))
                    .map_err(|e| format!("{name}: {e}"))?,
            );
        }
        let threads = ctx.threads();
        let scratch_len = convs
            .values()
            .map(|c| c.scratch_len(threads))
            .chain(deconvs.iter().map(|d| d.scratch_len(threads)))
            .max()
            .unwrap_or(0);
        Ok(FpeNet {
            convs,
            deconvs,
            scratch_len,
        })
    }

    pub fn conv(&self, name: &str) -> Option<&PreparedConv> {
        self.convs.get(name)
    }

    pub fn buffers(&self) -> Buffers {
        Buffers::new(self.scratch_len)
    }

    /// One 80×80 gray image (NCHW = HW) to the 80 heat maps in `bufs.keypoints_nchw`.
    pub fn run(&self, ctx: &Context, image: &[f32], bufs: &mut Buffers) -> Result<(), String> {
        let e = |e: tao_kernels::KernelError| e.to_string();
        nchw_to_nhwc(
            ctx,
            image,
            NhwcMut::new(&mut bufs.image, [1, SIZE, SIZE, 1]).map_err(e)?,
        )
        .map_err(e)?;
        let conv = |name: &str| self.convs.get(name).ok_or(format!("no layer {name}"));
        let scratch = &mut bufs.scratch;
        // Encoder: conv k writes the skip half (channels 64..128) of concat buffer k; the pool
        // reads it from there.
        for (stage, name) in [
            "block_1a_conv_1",
            "block_2a_conv_1",
            "block_3a_conv_1",
            "block_4a_conv_1",
        ]
        .iter()
        .enumerate()
        {
            let size = SIZE >> stage;
            let (done, rest) = bufs.pooled.split_at_mut(stage);
            let (input, cin): (&[f32], usize) = if stage == 0 {
                (&bufs.image, 1)
            } else {
                (&done[stage - 1], C)
            };
            let cat = &mut bufs.cat[stage];
            conv(name)?
                .execute(
                    ctx,
                    Nhwc::new(input, [1, size, size, cin]).map_err(e)?,
                    NhwcMut::with_stride(&mut cat[C..], [1, size, size, C], 2 * C).map_err(e)?,
                    Residual::None,
                    scratch,
                )
                .map_err(e)?;
            pool2d(
                ctx,
                &POOL,
                Nhwc::with_stride(&cat[C..], [1, size, size, C], 2 * C).map_err(e)?,
                NhwcMut::new(&mut rest[0], [1, size / 2, size / 2, C]).map_err(e)?,
            )
            .map_err(e)?;
        }
        // Bottleneck at 5×5.
        let (a, b) = bufs.tmp.split_at_mut(1);
        let run_dense = |name: &str,
                         src: &[f32],
                         dst: &mut [f32],
                         size: usize,
                         cin: usize,
                         scratch: &mut Vec<f32>|
         -> Result<(), String> {
            let c = conv(name)?;
            let cout = c.spec().out_channels;
            c.execute(
                ctx,
                Nhwc::new(src, [1, size, size, cin]).map_err(e)?,
                NhwcMut::new(dst, [1, size, size, cout]).map_err(e)?,
                Residual::None,
                scratch,
            )
            .map_err(e)
        };
        run_dense("block_5a_conv_1", &bufs.pooled[3], &mut a[0], 5, C, scratch)?;
        run_dense("block_5a_conv_2", &a[0], &mut b[0], 5, C, scratch)?;
        run_dense("block_5a_conv_3", &b[0], &mut a[0], 5, C, scratch)?;
        // Decoder: transposed conv into the upsampled half (channels 0..64) of the concat buffer,
        // then the 3×3 conv over all 128 channels and the 1×1 conv.
        let decoder = [
            ("block_6a_conv_1", "block_6a_conv_2"),
            ("block_7a_conv_1", "block_7a_conv_2"),
            ("block_8a_conv_1", "block_8a_conv_2"),
            ("block_9a_conv_1", "block_9a_conv_2"),
        ];
        for (step, (c1, c2)) in decoder.iter().enumerate() {
            let stage = 3 - step;
            let size = SIZE >> stage;
            let cat = &mut bufs.cat[stage];
            self.deconvs[step]
                .execute(
                    ctx,
                    Nhwc::new(&a[0], [1, size / 2, size / 2, C]).map_err(e)?,
                    NhwcMut::with_stride(&mut cat[..], [1, size, size, C], 2 * C).map_err(e)?,
                    Residual::None,
                    scratch,
                )
                .map_err(e)?;
            run_dense(c1, cat, &mut b[0], size, 2 * C, scratch)?;
            run_dense(c2, &b[0], &mut a[0], size, C, scratch)?;
        }
        run_dense(
            "conv_keypoints_m80",
            &a[0],
            &mut bufs.keypoints,
            SIZE,
            C,
            scratch,
        )?;
        nhwc_to_nchw(
            ctx,
            Nhwc::new(&bufs.keypoints, [1, SIZE, SIZE, KEYPOINTS]).map_err(e)?,
            &mut bufs.keypoints_nchw,
        )
        .map_err(e)
    }
}

/// Activation buffers of one FPENet run.
pub struct Buffers {
    image: Vec<f32>,
    /// Concat buffers at 80, 40, 20, 10 pixels: 128 channels (`[upsampled, skip]`).
    cat: [Vec<f32>; 4],
    /// Pooled encoder outputs at 40, 20, 10, 5 pixels.
    pooled: [Vec<f32>; 4],
    /// Two ping-pong buffers large enough for 80×80×64.
    tmp: [Vec<f32>; 2],
    keypoints: Vec<f32>,
    pub keypoints_nchw: Vec<f32>,
    scratch: Vec<f32>,
}

impl Buffers {
    fn new(scratch_len: usize) -> Buffers {
        let px = |s: usize| s * s;
        Buffers {
            image: vec![0.0; px(SIZE)],
            cat: [80, 40, 20, 10].map(|s| vec![0.0; px(s) * 2 * C]),
            pooled: [40, 20, 10, 5].map(|s| vec![0.0; px(s) * C]),
            tmp: [vec![0.0; px(SIZE) * C], vec![0.0; px(SIZE) * C]],
            keypoints: vec![0.0; px(SIZE) * KEYPOINTS],
            keypoints_nchw: vec![0.0; px(SIZE) * KEYPOINTS],
            scratch: vec![0.0; scratch_len],
        }
    }
}
