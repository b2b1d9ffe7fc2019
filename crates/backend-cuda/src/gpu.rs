//! The device: finding it (without ever touching a missing library), its fingerprint, the context,
//! stream and cuDNN handle everything runs on, device and pinned host buffers, and NVRTC.

use std::ffi::CString;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream, result as drv, sys as drv_sys};

use crate::cudnn;

/// What a plan built on this device is tied to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub multiprocessors: i32,
    pub memory_bytes: usize,
    /// The kernel driver's version (e.g. 580.159.04), or the CUDA version it supports.
    pub driver: String,
    /// CUDA version the driver supports, e.g. 13000.
    pub driver_cuda: i32,
    pub runtime: Option<i32>,
    pub nvrtc: (i32, i32),
    pub cudnn: String,
    pub cublas: Option<String>,
}

impl DeviceInfo {
    /// GPU name, compute capability, driver, CUDA runtime, NVRTC, cuDNN and cuBLAS versions.
    pub fn fingerprint(&self) -> String {
        let cuda = |v: i32| format!("{}.{}", v / 1000, (v % 1000) / 10);
        format!(
            "cuda {} sm_{}{} driver {} (cuda {}) cudart {} nvrtc {}.{} cudnn {} cublas {}",
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.driver,
            cuda(self.driver_cuda),
            self.runtime.map_or("none".to_owned(), cuda),
            self.nvrtc.0,
            self.nvrtc.1,
            self.cudnn,
            self.cublas.as_deref().unwrap_or("none"),
        )
    }

    /// The NVRTC target for this GPU, e.g. `sm_90`.
    pub fn arch(&self) -> String {
        format!(
            "sm_{}{}",
            self.compute_capability.0, self.compute_capability.1
        )
    }
}

/// An opened device: context, the one stream, the cuDNN handle on that stream.
/// Fields drop in order: the cuDNN handle before the stream, the stream before the context.
pub struct Gpu {
    pub cudnn: cudnn::Handle,
    pub stream: Arc<CudaStream>,
    pub ctx: Arc<CudaContext>,
    pub info: DeviceInfo,
}

/// Opens device `ordinal`. Every failure is `"no GPU: <reason>"`, including a missing library, a
/// driver without a device, or a library too old to have a function this backend calls.
pub fn open(ordinal: usize) -> Result<Gpu, String> {
    let result = std::panic::catch_unwind(|| open_checked(ordinal));
    match result {
        Ok(r) => r.map_err(|e| format!("no GPU: {e}")),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a CUDA library could not be used".to_owned());
            Err(format!("no GPU: {what}"))
        }
    }
}

fn open_checked(ordinal: usize) -> Result<Gpu, String> {
    // SAFETY: these only try to dlopen the libraries.
    unsafe {
        if !drv_sys::is_culib_present() {
            return Err("the NVIDIA driver's CUDA library (libcuda.so.1) is not installed".into());
        }
        if !cudarc::nvrtc::sys::is_culib_present() {
            return Err("NVRTC (libnvrtc.so.13) is not installed or not on LD_LIBRARY_PATH".into());
        }
        if !cudarc::cudnn::sys::is_culib_present() {
            return Err(
                "cuDNN 9 (libcudnn.so.9) is not installed or not on LD_LIBRARY_PATH".into(),
            );
        }
    }
    drv::init().map_err(|e| format!("cuInit failed: {e}"))?;
    let count = drv::device::get_count().map_err(|e| format!("cuDeviceGetCount: {e}"))?;
    if count <= 0 {
        return Err("the driver reports no CUDA device".into());
    }
    if ordinal >= count as usize {
        return Err(format!("device {ordinal} asked for, {count} present"));
    }
    let ctx = CudaContext::new(ordinal).map_err(|e| format!("creating a context: {e}"))?;
    // One stream and raw pointers: the engine orders everything itself, and graph capture must
    // not see the per-buffer events the safe API would record.
    // SAFETY: no allocation of the safe API is alive yet.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx
        .new_stream()
        .map_err(|e| format!("creating a stream: {e}"))?;
    let cudnn = cudnn::Handle::new(stream.cu_stream()).map_err(|e| format!("cuDNN: {e}"))?;
    let info = device_info(&ctx, ordinal)?;
    Ok(Gpu {
        ctx,
        stream,
        cudnn,
        info,
    })
}

fn device_info(ctx: &Arc<CudaContext>, ordinal: usize) -> Result<DeviceInfo, String> {
    let name = ctx.name().map_err(|e| format!("device name: {e}"))?;
    let compute_capability = ctx
        .compute_capability()
        .map_err(|e| format!("compute capability: {e}"))?;
    let multiprocessors = ctx
        .attribute(drv_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .unwrap_or(0);
    let memory_bytes = ctx.total_mem().unwrap_or(0);
    let mut driver_cuda = 0;
    // SAFETY: out-pointer to a local.
    unsafe { drv_sys::cuDriverGetVersion(&mut driver_cuda) };
    let driver = kernel_driver_version().unwrap_or_else(|| format!("cuda-{driver_cuda}"));
    let mut runtime = None;
    // SAFETY: dlopen probe, then a plain query.
    unsafe {
        if cudarc::runtime::sys::is_culib_present() {
            let mut v = 0;
            if cudarc::runtime::sys::cudaRuntimeGetVersion(&mut v)
                == cudarc::runtime::sys::cudaError_t::cudaSuccess
            {
                runtime = Some(v);
            }
        }
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: out-pointers to locals.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    let mut cublas = None;
    // SAFETY: dlopen probe, then plain queries.
    unsafe {
        if cudarc::cublas::sys::is_culib_present() {
            use cudarc::cublas::sys::libraryPropertyType::*;
            let mut v = [0i32; 3];
            for (slot, p) in v
                .iter_mut()
                .zip([MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL])
            {
                cudarc::cublas::sys::cublasGetProperty(p, slot);
            }
            cublas = Some(format!("{}.{}.{}", v[0], v[1], v[2]));
        }
    }
    Ok(DeviceInfo {
        ordinal,
        name,
        compute_capability,
        multiprocessors,
        memory_bytes,
        driver,
        driver_cuda,
        runtime,
        nvrtc: (major, minor),
        cudnn: cudnn::version(),
        cublas,
    })
}

/// The kernel module's version from `/proc/driver/nvidia/version` (Linux).
fn kernel_driver_version() -> Option<String> {
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    text.lines().next()?.split_whitespace().find_map(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        (parts.len() >= 2
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
        .then(|| w.to_owned())
    })
}

/// Device memory owned by the engine (plain `cuMemAlloc`, freed on drop).
pub struct DeviceBuffer {
    pub ptr: u64,
    pub bytes: usize,
    ctx: Arc<CudaContext>,
}

// SAFETY: a device address; the engine serialises its use.
unsafe impl Send for DeviceBuffer {}

impl DeviceBuffer {
    pub fn new(ctx: &Arc<CudaContext>, bytes: usize) -> Result<DeviceBuffer, String> {
        ctx.bind_to_thread().map_err(|e| e.to_string())?;
        // SAFETY: plain allocation of at least one byte; freed in Drop.
        let ptr = unsafe { drv::malloc_sync(bytes.max(256)) }
            .map_err(|e| format!("allocating {bytes} bytes of device memory: {e}"))?;
        Ok(DeviceBuffer {
            ptr,
            bytes,
            ctx: ctx.clone(),
        })
    }

    /// Copies `data` to the start of the buffer and waits.
    pub fn upload(&self, data: &[u8]) -> Result<(), String> {
        if data.len() > self.bytes {
            return Err("upload larger than the buffer".into());
        }
        self.ctx.bind_to_thread().map_err(|e| e.to_string())?;
        // SAFETY: `data` fits the allocation; the copy is synchronous.
        unsafe { drv::memcpy_htod_sync(self.ptr, data) }.map_err(|e| format!("upload: {e}"))
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by cuMemAlloc and freed once; the engine synchronises before drop.
            unsafe {
                let _ = drv::free_sync(self.ptr);
            }
        }
    }
}

/// Page-locked host memory for asynchronous copies.
pub struct PinnedBuffer {
    ptr: *mut f32,
    len: usize,
    ctx: Arc<CudaContext>,
}

// SAFETY: owned host memory; the engine serialises its use.
unsafe impl Send for PinnedBuffer {}

impl PinnedBuffer {
    pub fn new(ctx: &Arc<CudaContext>, len: usize) -> Result<PinnedBuffer, String> {
        ctx.bind_to_thread().map_err(|e| e.to_string())?;
        let bytes = len.max(1) * 4;
        // SAFETY: plain page-locked allocation; zeroed below, freed in Drop.
        let ptr = unsafe { drv::malloc_host(bytes, 0) }
            .map_err(|e| format!("allocating {bytes} bytes of pinned memory: {e}"))?
            as *mut f32;
        if ptr.is_null() || !ptr.is_aligned() {
            return Err("pinned allocation returned an unusable pointer".into());
        }
        // SAFETY: the allocation holds `len.max(1)` f32s.
        unsafe { std::ptr::write_bytes(ptr, 0, len.max(1)) };
        Ok(PinnedBuffer {
            ptr,
            len,
            ctx: ctx.clone(),
        })
    }

    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: `len` initialised f32s owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: `len` initialised f32s owned by self, borrowed mutably once.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by cuMemHostAlloc and freed once.
            unsafe {
                let _ = drv::free_host(self.ptr as *mut std::ffi::c_void);
            }
        }
    }
}

/// Compiles CUDA source with NVRTC for `arch` (e.g. `sm_90`) and returns the CUBIN. Needs only
/// NVRTC, not a GPU.
pub fn nvrtc_compile(source: &str, arch: &str, defines: &[&str]) -> Result<Vec<u8>, String> {
    use cudarc::nvrtc::{result as nv, sys as nv_sys};
    // SAFETY: dlopen probe.
    if !unsafe { nv_sys::is_culib_present() } {
        return Err("NVRTC (libnvrtc.so.13) is not installed or not on LD_LIBRARY_PATH".into());
    }
    let src = CString::new(source).map_err(|_| "kernel source contains NUL".to_owned())?;
    let name = CString::new("tao_kernels.cu").map_err(|e| e.to_string())?;
    let prog =
        nv::create_program(&src, Some(&name)).map_err(|e| format!("nvrtcCreateProgram: {e}"))?;
    // No fast math: FP32 results must stay within 1e-3 of the CPU reference.
    let mut options = vec![
        format!("--gpu-architecture={arch}"),
        "-std=c++17".to_owned(),
    ];
    options.extend(defines.iter().map(|d| format!("-D{d}")));
    // SAFETY: `prog` is live until destroyed at the end; buffers sized by NVRTC's own size queries.
    unsafe {
        let compiled = nv::compile_program(prog, &options);
        let out = match compiled {
            Err(e) => {
                let log = nv::get_program_log(prog).unwrap_or_default();
                let log: Vec<u8> = log
                    .iter()
                    .map(|&c| c as u8)
                    .take_while(|&c| c != 0)
                    .collect();
                Err(format!(
                    "NVRTC could not compile the kernels ({e}):\n{}",
                    String::from_utf8_lossy(&log)
                ))
            }
            Ok(()) => {
                let mut size = 0usize;
                let status = nv_sys::nvrtcGetCUBINSize(prog, &mut size);
                if status != nv_sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
                    Err(format!("nvrtcGetCUBINSize: {status:?}"))
                } else {
                    let mut cubin = vec![0u8; size];
                    let status = nv_sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut _);
                    if status != nv_sys::nvrtcResult::NVRTC_SUCCESS {
                        Err(format!("nvrtcGetCUBIN: {status:?}"))
                    } else {
                        Ok(cubin)
                    }
                }
            }
        };
        let _ = nv::destroy_program(prog);
        out
    }
}
