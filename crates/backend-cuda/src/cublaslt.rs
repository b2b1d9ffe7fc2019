//! Fully connected layers through cuBLASLt: one matmul per [`GemmStep`] with the bias and ReLU in
//! its epilogue. The handle and its workspace exist only for programs that have such a step, so
//! programs without one never load the library.

use std::ffi::c_void;

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;

use crate::gpu::{DeviceBuffer, Gpu};
use crate::program::{DType, GemmStep, unary};

/// Workspace offered to the matmul heuristic.
const WORKSPACE: usize = 32 << 20;

pub struct Lt {
    handle: sys::cublasLtHandle_t,
    workspace: DeviceBuffer,
}

// SAFETY: the handle is used from one thread at a time (the engine serialises its use).
unsafe impl Send for Lt {}

fn err(call: &str) -> impl Fn(lt::CublasError) -> String + '_ {
    move |e| format!("{call}: {e}")
}

/// Destroys the descriptors of one call however it ends.
struct Descs {
    desc: sys::cublasLtMatmulDesc_t,
    layouts: Vec<sys::cublasLtMatrixLayout_t>,
    pref: Option<sys::cublasLtMatmulPreference_t>,
}

impl Drop for Descs {
    fn drop(&mut self) {
        // SAFETY: each was created once by this call and is destroyed once.
        unsafe {
            let _ = lt::destroy_matmul_desc(self.desc);
            for l in &self.layouts {
                let _ = lt::destroy_matrix_layout(*l);
            }
            if let Some(p) = self.pref {
                let _ = lt::destroy_matmul_pref(p);
            }
        }
    }
}

impl Lt {
    pub fn new(gpu: &Gpu) -> Result<Lt, String> {
        // SAFETY: only tries to dlopen the library.
        if !unsafe { sys::is_culib_present() } {
            return Err("cuBLASLt (libcublasLt) is not installed".into());
        }
        let handle = lt::create_handle().map_err(err("cublasLtCreate"))?;
        let workspace = DeviceBuffer::new(&gpu.ctx, WORKSPACE)?;
        Ok(Lt { handle, workspace })
    }

    /// Enqueues `y[b, n] = act(x[b, k] · w[n, k]ᵀ + bias)` for `batch` images on the GPU's stream. In
    /// cuBLASLt's column-major terms: D (n × batch) = op(A)·B with A the k × n weights transposed
    /// and B the k × batch input.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        g: &GemmStep,
        dtype: DType,
        batch: usize,
        x: u64,
        w: u64,
        bias: Option<u64>,
        y: u64,
        gpu: &Gpu,
    ) -> Result<(), String> {
        let stream = gpu.stream.cu_stream() as sys::cudaStream_t;
        let data = match dtype {
            DType::F32 => sys::cudaDataType::CUDA_R_32F,
            DType::F16 => sys::cudaDataType::CUDA_R_16F,
        };
        let (k, n, b) = (g.k as u64, g.n as u64, batch as u64);
        let desc = lt::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType::CUDA_R_32F,
        )
        .map_err(err("cublasLtMatmulDescCreate"))?;
        let mut descs = Descs {
            desc,
            layouts: Vec::new(),
            pref: None,
        };
        for (rows, cols, ld) in [(k, n, k), (k, b, k), (n, b, n)] {
            let l = lt::create_matrix_layout(data, rows, cols, ld as i64)
                .map_err(err("cublasLtMatrixLayoutCreate"))?;
            descs.layouts.push(l);
        }
        let transpose: i32 = 1; // CUBLAS_OP_T
        let relu = g.activation.code == unary::RELU;
        let epilogue = match (bias.is_some(), relu) {
            (true, true) => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_RELU_BIAS,
            (true, false) => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
            (false, true) => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_RELU,
            (false, false) => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT,
        };
        let attr = sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA;
        // SAFETY: a live descriptor; each value is read during the call from a local of the size
        // given.
        unsafe {
            lt::set_matmul_desc_attribute(desc, attr, &transpose as *const i32 as *const c_void, 4)
                .map_err(err("CUBLASLT_MATMUL_DESC_TRANSA"))?;
            lt::set_matmul_desc_attribute(
                desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_EPILOGUE,
                &epilogue as *const sys::cublasLtEpilogue_t as *const c_void,
                std::mem::size_of::<sys::cublasLtEpilogue_t>(),
            )
            .map_err(err("CUBLASLT_MATMUL_DESC_EPILOGUE"))?;
            if let Some(bias) = bias {
                let ptr = bias as *const c_void;
                lt::set_matmul_desc_attribute(
                    desc,
                    sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                    &ptr as *const *const c_void as *const c_void,
                    std::mem::size_of::<*const c_void>(),
                )
                .map_err(err("CUBLASLT_MATMUL_DESC_BIAS_POINTER"))?;
            }
        }
        let pref = lt::create_matmul_pref().map_err(err("cublasLtMatmulPreferenceCreate"))?;
        descs.pref = Some(pref);
        let limit = WORKSPACE as u64;
        let [a_l, b_l, d_l] = [descs.layouts[0], descs.layouts[1], descs.layouts[2]];
        // SAFETY: live descriptors and buffers sized by the program for `batch` images (validated
        // by `codec::validate`); the scalars live until the call returns.
        unsafe {
            lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &limit as *const u64 as *const c_void,
                8,
            )
            .map_err(err("CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES"))?;
            let heuristic =
                lt::get_matmul_algo_heuristic(self.handle, desc, a_l, b_l, d_l, d_l, pref)
                    .map_err(err("cublasLtMatmulAlgoGetHeuristic"))?;
            let (alpha, beta) = (1f32, 0f32);
            lt::matmul(
                self.handle,
                desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                w as *const c_void,
                a_l,
                x as *const c_void,
                b_l,
                y as *const c_void,
                d_l,
                y as *mut c_void,
                d_l,
                &heuristic.algo,
                self.workspace.ptr as *mut c_void,
                WORKSPACE,
                stream,
            )
            .map_err(err("cublasLtMatmul"))
        }
    }
}

impl Drop for Lt {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once (the engine synchronises before dropping).
        unsafe {
            let _ = lt::destroy_handle(self.handle);
        }
    }
}
