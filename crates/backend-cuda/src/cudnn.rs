//! Thin owners of the cuDNN objects the backend uses (legacy convolution API), each destroyed on
//! drop, with every status turned into an error that names the call.

use std::ffi::CStr;

use cudarc::cudnn::sys;

pub use sys::{cudnnConvolutionBwdDataAlgo_t as BwdAlgo, cudnnConvolutionFwdAlgo_t as FwdAlgo};

use crate::program::DType;

pub fn check(status: sys::cudnnStatus_t, call: &str) -> Result<(), String> {
    if status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        return Ok(());
    }
    // SAFETY: cudnnGetErrorString returns a static, NUL-terminated string for any status.
    let text = unsafe {
        let p = sys::cudnnGetErrorString(status);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(format!("{call}: {status:?} {text}"))
}

pub fn data_type(d: DType) -> sys::cudnnDataType_t {
    match d {
        DType::F32 => sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
        DType::F16 => sys::cudnnDataType_t::CUDNN_DATA_HALF,
    }
}

pub fn fwd_algo(n: u32) -> Option<FwdAlgo> {
    use FwdAlgo::*;
    Some(match n {
        0 => CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        1 => CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        2 => CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        3 => CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        4 => CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        5 => CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        6 => CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        7 => CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
        _ => return None,
    })
}

pub fn bwd_algo(n: u32) -> Option<BwdAlgo> {
    use BwdAlgo::*;
    Some(match n {
        0 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
        1 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        2 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        3 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
        4 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
        5 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
        _ => return None,
    })
}

pub fn math_type(n: u32) -> Option<sys::cudnnMathType_t> {
    use sys::cudnnMathType_t::*;
    Some(match n {
        0 => CUDNN_DEFAULT_MATH,
        1 => CUDNN_TENSOR_OP_MATH,
        2 => CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
        3 => CUDNN_FMA_MATH,
        _ => return None,
    })
}

pub fn math_number(m: sys::cudnnMathType_t) -> u32 {
    m as u32
}

pub struct Handle(pub sys::cudnnHandle_t);

// SAFETY: a cuDNN handle may move between threads; the engine uses it from one thread at a time.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl Handle {
    pub fn new(stream: cudarc::driver::sys::CUstream) -> Result<Handle, String> {
        let mut h = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; the handle is destroyed in Drop.
        unsafe {
            check(sys::cudnnCreate(&mut h), "cudnnCreate")?;
            let handle = Handle(h);
            check(
                sys::cudnnSetStream(h, stream as sys::cudaStream_t),
                "cudnnSetStream",
            )?;
            Ok(handle)
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreate and destroyed once.
        unsafe {
            sys::cudnnDestroy(self.0);
        }
    }
}

pub struct TensorDesc(pub sys::cudnnTensorDescriptor_t);

impl TensorDesc {
    /// An NHWC tensor of `n` images (dimensions given in NCHW order, as cuDNN takes them).
    pub fn nhwc(
        dtype: DType,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<TensorDesc, String> {
        Self::nhwc_of(data_type(dtype), n, c, h, w)
    }

    /// [`TensorDesc::nhwc`] for any cuDNN data type (INT8 included).
    pub fn nhwc_of(
        dtype: sys::cudnnDataType_t,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<TensorDesc, String> {
        Self::with_format(
            sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC,
            dtype,
            [n, c, h, w],
        )
    }

    /// The `1×K×1×1` bias of a fused convolution.
    pub fn bias(dtype: DType, k: usize) -> Result<TensorDesc, String> {
        Self::with_format(
            sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
            data_type(dtype),
            [1, k, 1, 1],
        )
    }

    fn with_format(
        format: sys::cudnnTensorFormat_t,
        dtype: sys::cudnnDataType_t,
        dims: [usize; 4],
    ) -> Result<TensorDesc, String> {
        let d = dims_i32(&dims)?;
        let mut t = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; destroyed in Drop.
        unsafe {
            check(
                sys::cudnnCreateTensorDescriptor(&mut t),
                "cudnnCreateTensorDescriptor",
            )?;
            let desc = TensorDesc(t);
            check(
                sys::cudnnSetTensor4dDescriptor(t, format, dtype, d[0], d[1], d[2], d[3]),
                "cudnnSetTensor4dDescriptor",
            )?;
            Ok(desc)
        }
    }
}

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        unsafe {
            sys::cudnnDestroyTensorDescriptor(self.0);
        }
    }
}

fn dims_i32(dims: &[usize]) -> Result<Vec<i32>, String> {
    dims.iter()
        .map(|&d| i32::try_from(d).map_err(|_| format!("dimension {d} is too large for cuDNN")))
        .collect()
}

pub struct FilterDesc(pub sys::cudnnFilterDescriptor_t);

impl FilterDesc {
    /// KRSC filters (`k` outputs, `c` inputs per group).
    pub fn krsc(
        dtype: DType,
        k: usize,
        c: usize,
        r: usize,
        s: usize,
    ) -> Result<FilterDesc, String> {
        Self::krsc_of(data_type(dtype), k, c, r, s)
    }

    /// [`FilterDesc::krsc`] for any cuDNN data type (INT8 included).
    pub fn krsc_of(
        dtype: sys::cudnnDataType_t,
        k: usize,
        c: usize,
        r: usize,
        s: usize,
    ) -> Result<FilterDesc, String> {
        let d = dims_i32(&[k, c, r, s])?;
        let mut f = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; destroyed in Drop.
        unsafe {
            check(
                sys::cudnnCreateFilterDescriptor(&mut f),
                "cudnnCreateFilterDescriptor",
            )?;
            let desc = FilterDesc(f);
            check(
                sys::cudnnSetFilter4dDescriptor(
                    f,
                    dtype,
                    sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC,
                    d[0],
                    d[1],
                    d[2],
                    d[3],
                ),
                "cudnnSetFilter4dDescriptor",
            )?;
            Ok(desc)
        }
    }
}

impl Drop for FilterDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        unsafe {
            sys::cudnnDestroyFilterDescriptor(self.0);
        }
    }
}

pub struct ConvDesc(pub sys::cudnnConvolutionDescriptor_t);

impl ConvDesc {
    /// Cross-correlation with FP32 accumulation.
    pub fn new(
        pad: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> Result<ConvDesc, String> {
        Self::with_compute(
            pad,
            stride,
            dilation,
            groups,
            sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
        )
    }

    /// Cross-correlation accumulating in `compute` (INT32 for INT8 data).
    pub fn with_compute(
        pad: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
        compute: sys::cudnnDataType_t,
    ) -> Result<ConvDesc, String> {
        let p = dims_i32(&[
            pad[0],
            pad[1],
            stride[0],
            stride[1],
            dilation[0],
            dilation[1],
            groups,
        ])?;
        let mut c = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; destroyed in Drop.
        unsafe {
            check(
                sys::cudnnCreateConvolutionDescriptor(&mut c),
                "cudnnCreateConvolutionDescriptor",
            )?;
            let desc = ConvDesc(c);
            check(
                sys::cudnnSetConvolution2dDescriptor(
                    c,
                    p[0],
                    p[1],
                    p[2],
                    p[3],
                    p[4],
                    p[5],
                    sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    compute,
                ),
                "cudnnSetConvolution2dDescriptor",
            )?;
            if groups > 1 {
                check(
                    sys::cudnnSetConvolutionGroupCount(c, p[6]),
                    "cudnnSetConvolutionGroupCount",
                )?;
            }
            Ok(desc)
        }
    }

    pub fn set_math(&self, math: sys::cudnnMathType_t) -> Result<(), String> {
        // SAFETY: a live descriptor.
        unsafe {
            check(
                sys::cudnnSetConvolutionMathType(self.0, math),
                "cudnnSetConvolutionMathType",
            )
        }
    }
}

impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        unsafe {
            sys::cudnnDestroyConvolutionDescriptor(self.0);
        }
    }
}

pub struct ActDesc(pub sys::cudnnActivationDescriptor_t);

impl ActDesc {
    pub fn new(relu: bool) -> Result<ActDesc, String> {
        let mode = if relu {
            sys::cudnnActivationMode_t::CUDNN_ACTIVATION_RELU
        } else {
            sys::cudnnActivationMode_t::CUDNN_ACTIVATION_IDENTITY
        };
        let mut a = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; destroyed in Drop.
        unsafe {
            check(
                sys::cudnnCreateActivationDescriptor(&mut a),
                "cudnnCreateActivationDescriptor",
            )?;
            let desc = ActDesc(a);
            check(
                sys::cudnnSetActivationDescriptor(
                    a,
                    mode,
                    sys::cudnnNanPropagation_t::CUDNN_NOT_PROPAGATE_NAN,
                    0.0,
                ),
                "cudnnSetActivationDescriptor",
            )?;
            Ok(desc)
        }
    }
}

impl Drop for ActDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        unsafe {
            sys::cudnnDestroyActivationDescriptor(self.0);
        }
    }
}

/// cuDNN's version as `major.minor.patch` (cuDNN 9 numbers versions major·10000 + minor·100 + patch).
pub fn version() -> String {
    // SAFETY: plain query.
    let v = unsafe { sys::cudnnGetVersion() };
    if v >= 90000 {
        format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v % 1000) / 100, v % 100)
    }
}
