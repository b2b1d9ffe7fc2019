//! Whether cuDNN has a fast INT8 convolution for a program's shapes on this GPU, measured before
//! an INT8 path is built on it: for each distinct convolution, cuDNN's own best FP16 algorithm
//! (NHWC, FP32 accumulation, tensor-op math) against its best INT8 one (NHWC INT8 data and filters,
//! INT32 accumulation, INT8 output, else FP32 output), both timed by
//! `cudnnFindConvolutionForwardAlgorithmEx` on the same buffers.

use std::ffi::c_void;

use cudarc::cudnn::sys as dnn;

use crate::cudnn::{ConvDesc, FilterDesc, TensorDesc, check};
use crate::gpu::{DeviceBuffer, Gpu};
use crate::program::ConvGeom;

/// One convolution shape: how often the program has it and the best time of each path.
#[derive(Clone, Debug)]
pub struct ProbeRow {
    pub geom: ConvGeom,
    pub count: usize,
    /// Best FP16 time (microseconds), or why there is none.
    pub fp16: Result<f32, String>,
    /// Best INT8 time (microseconds) and the output type it wrote, or why there is none.
    pub int8: Result<(f32, &'static str), String>,
}

const WORKSPACE: usize = 256 << 20;

struct Config {
    data: dnn::cudnnDataType_t,
    output: dnn::cudnnDataType_t,
    compute: dnn::cudnnDataType_t,
    bytes: usize,
    out_bytes: usize,
}

/// Times every distinct shape of `convs` (with their counts) at `batch` images.
pub fn probe(gpu: &Gpu, convs: &[(ConvGeom, usize)], batch: usize) -> Vec<ProbeRow> {
    use dnn::cudnnDataType_t::*;
    let half = Config {
        data: CUDNN_DATA_HALF,
        output: CUDNN_DATA_HALF,
        compute: CUDNN_DATA_FLOAT,
        bytes: 2,
        out_bytes: 2,
    };
    let int8 = [
        (
            Config {
                data: CUDNN_DATA_INT8,
                output: CUDNN_DATA_INT8,
                compute: CUDNN_DATA_INT32,
                bytes: 1,
                out_bytes: 1,
            },
            "int8",
        ),
        (
            Config {
                data: CUDNN_DATA_INT8,
                output: CUDNN_DATA_FLOAT,
                compute: CUDNN_DATA_INT32,
                bytes: 1,
                out_bytes: 4,
            },
            "fp32",
        ),
    ];
    convs
        .iter()
        .map(|&(geom, count)| {
            let fp16 = best_us(gpu, &half, &geom, batch);
            let mut int8_result = Err(String::from("no INT8 configuration ran"));
            for (config, out) in &int8 {
                match best_us(gpu, config, &geom, batch) {
                    Ok(us) => {
                        int8_result = Ok((us, *out));
                        break;
                    }
                    Err(e) => int8_result = Err(e),
                }
            }
            ProbeRow {
                geom,
                count,
                fp16,
                int8: int8_result,
            }
        })
        .collect()
}

fn best_us(gpu: &Gpu, c: &Config, g: &ConvGeom, batch: usize) -> Result<f32, String> {
    let x = TensorDesc::nhwc_of(c.data, batch, g.in_channels, g.input[0], g.input[1])?;
    let y = TensorDesc::nhwc_of(c.output, batch, g.out_channels, g.output[0], g.output[1])?;
    let w = FilterDesc::krsc_of(
        c.data,
        g.out_channels,
        g.in_channels / g.groups.max(1),
        g.kernel[0],
        g.kernel[1],
    )?;
    let conv = ConvDesc::with_compute(g.pad, g.stride, g.dilation, g.groups, c.compute)?;
    let elems = |n: usize, ch: usize, hw: [usize; 2]| n * ch * hw[0] * hw[1];
    let xb = DeviceBuffer::new(&gpu.ctx, elems(batch, g.in_channels, g.input) * c.bytes)?;
    let yb = DeviceBuffer::new(
        &gpu.ctx,
        elems(batch, g.out_channels, g.output) * c.out_bytes,
    )?;
    let wb = DeviceBuffer::new(
        &gpu.ctx,
        g.out_channels * g.in_channels / g.groups.max(1) * g.kernel[0] * g.kernel[1] * c.bytes,
    )?;
    // Zeros: timing data that is never NaN in either type.
    for b in [&xb, &yb, &wb] {
        b.upload(&vec![0u8; b.bytes])?;
    }
    let ws = DeviceBuffer::new(&gpu.ctx, WORKSPACE)?;
    let mut best: Option<f32> = None;
    let mut last = String::from("cuDNN returned no algorithm");
    for math in [
        dnn::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
        dnn::cudnnMathType_t::CUDNN_DEFAULT_MATH,
    ] {
        conv.set_math(math)?;
        let mut perf: [std::mem::MaybeUninit<dnn::cudnnConvolutionFwdAlgoPerf_t>; 8] =
            [std::mem::MaybeUninit::uninit(); 8];
        let mut returned = 0i32;
        // SAFETY: live descriptors; buffers sized for the descriptors; results into `perf`.
        let status = unsafe {
            dnn::cudnnFindConvolutionForwardAlgorithmEx(
                gpu.cudnn.0,
                x.0,
                xb.ptr as *const c_void,
                w.0,
                wb.ptr as *const c_void,
                conv.0,
                y.0,
                yb.ptr as *mut c_void,
                8,
                &mut returned,
                perf.as_mut_ptr() as *mut dnn::cudnnConvolutionFwdAlgoPerf_t,
                ws.ptr as *mut c_void,
                WORKSPACE,
            )
        };
        if let Err(e) = check(status, "cudnnFindConvolutionForwardAlgorithmEx") {
            last = e;
            continue;
        }
        for p in perf.iter().take(returned.clamp(0, 8) as usize) {
            // SAFETY: cuDNN wrote the first `returned` entries.
            let p = unsafe { p.assume_init() };
            if p.status == dnn::cudnnStatus_t::CUDNN_STATUS_SUCCESS && p.time >= 0.0 {
                let us = p.time * 1000.0;
                best = Some(best.map_or(us, |b: f32| b.min(us)));
            } else if best.is_none() {
                last = format!("algorithm {:?}: {:?}", p.algo, p.status);
            }
        }
    }
    best.ok_or(last)
}
