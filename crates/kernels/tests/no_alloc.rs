//! Execution performs no heap allocation: a counting global allocator watches every kernel's
//! execute call (after a warm-up call) on a multi-threaded context.

mod common;

use common::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use tao_kernels::{
    Activation, BLayout, Context, Conv2dSpec, ConvAlgorithm, ConvTranspose2dSpec, Epilogue,
    GemmEpilogue, GlobalPoolKind, MatMut, MatRef, Nhwc, NhwcMut, Padding2d, Pool2dSpec, PoolKind,
    PrepareOptions, PreparedConv, PreparedConvTranspose, Residual, ResidualAdd, gemm, global_pool,
    nchw_to_nhwc, pack_b, pool2d,
};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` twice (the first call may initialise lazily) and returns the allocations of the second.
fn allocations_of(mut f: impl FnMut()) -> usize {
    f();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn execute_calls_do_not_allocate() {
    let ctx = Context::new(3).expect("context");
    let mut rng = Rng(5);
    let (h, w, c) = (20, 22, 24);
    let input = rng.vec(2 * h * w * c);
    for (algorithm, kernel, stride, groups) in [
        (ConvAlgorithm::Winograd4x4, 3, 1, 1),
        (ConvAlgorithm::Winograd2x2, 3, 1, 1),
        (ConvAlgorithm::Im2col, 3, 2, 1),
        (ConvAlgorithm::Im2col, 5, 1, 2),
        (ConvAlgorithm::Pointwise, 1, 2, 1),
        (ConvAlgorithm::Depthwise, 3, 1, c),
    ] {
        let mut spec = Conv2dSpec::new(c, c, kernel, stride, kernel / 2, [h, w]);
        spec.groups = groups;
        spec.epilogue = Epilogue::new(Activation::Relu, ResidualAdd::BeforeActivation);
        let weights = rng.vec(c * c / groups * kernel * kernel);
        let conv = PreparedConv::prepare(
            &spec,
            &weights,
            None,
            PrepareOptions {
                algorithm: Some(algorithm),
            },
        )
        .expect("prepare");
        let [oh, ow] = conv.output_size();
        let mut out = vec![1f32; 2 * oh * ow * c];
        let mut scratch = vec![0f32; conv.scratch_len(ctx.threads())];
        let count = allocations_of(|| {
            conv.execute(
                &ctx,
                Nhwc::new(&input, [2, h, w, c]).expect("view"),
                NhwcMut::new(&mut out, [2, oh, ow, c]).expect("view"),
                Residual::InPlace,
                &mut scratch,
            )
            .expect("execute")
        });
        assert_eq!(count, 0, "{algorithm:?} allocated {count} times");
    }

    let spec = ConvTranspose2dSpec {
        in_channels: c,
        out_channels: 8,
        groups: 1,
        kernel: [4, 4],
        stride: [2, 2],
        dilation: [1, 1],
        padding: Padding2d::uniform(1),
        output_padding: [0, 0],
        input_size: [h, w],
        epilogue: Epilogue::default(),
    };
    let deconv =
        PreparedConvTranspose::prepare(&spec, &rng.vec(c * 8 * 16), None).expect("prepare");
    let [oh, ow] = deconv.output_size();
    let mut out = vec![0f32; 2 * oh * ow * 8];
    let mut scratch = vec![0f32; deconv.scratch_len(ctx.threads())];
    let count = allocations_of(|| {
        deconv
            .execute(
                &ctx,
                Nhwc::new(&input, [2, h, w, c]).expect("view"),
                NhwcMut::new(&mut out, [2, oh, ow, 8]).expect("view"),
                Residual::None,
                &mut scratch,
            )
            .expect("execute")
    });
    assert_eq!(count, 0, "transposed conv allocated");

    let b = pack_b(&rng.vec(c * 40), c, 40, BLayout::RowMajor).expect("pack");
    let mut cm = vec![0f32; 2 * h * w * 40];
    let count = allocations_of(|| {
        gemm(
            &ctx,
            MatRef {
                data: &input,
                rows: 2 * h * w,
                cols: c,
                row_stride: c,
            },
            b.as_ref(),
            MatMut {
                data: &mut cm,
                rows: 2 * h * w,
                cols: 40,
                row_stride: 40,
            },
            &GemmEpilogue::default(),
        )
        .expect("gemm")
    });
    assert_eq!(count, 0, "gemm allocated");

    let pool = Pool2dSpec {
        kind: PoolKind::Max,
        kernel: [3, 3],
        stride: [2, 2],
        dilation: [1, 1],
        padding: Padding2d::uniform(1),
        ceil_mode: false,
    };
    let [oh, ow] = pool.output_size([h, w]).expect("size");
    let mut pooled = vec![0f32; 2 * oh * ow * c];
    let mut global = vec![0f32; 2 * c];
    let mut nhwc = vec![0f32; input.len()];
    let count = allocations_of(|| {
        pool2d(
            &ctx,
            &pool,
            Nhwc::new(&input, [2, h, w, c]).expect("v"),
            NhwcMut::new(&mut pooled, [2, oh, ow, c]).expect("v"),
        )
        .expect("pool");
        global_pool(
            &ctx,
            GlobalPoolKind::Avg,
            Nhwc::new(&input, [2, h, w, c]).expect("v"),
            NhwcMut::new(&mut global, [2, 1, 1, c]).expect("v"),
        )
        .expect("global");
        nchw_to_nhwc(
            &ctx,
            &input,
            NhwcMut::new(&mut nhwc, [2, h, w, c]).expect("v"),
        )
        .expect("layout");
    });
    assert_eq!(count, 0, "pooling / layout allocated");
}
