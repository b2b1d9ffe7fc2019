//! Execution performs no heap allocation: a counting global allocator watches every algorithm's
//! execute call (after a warm-up call) on a multi-threaded context of each instruction set.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Rng, contexts};
use tao_kernels_int8::{
    Activation, Conv2dSpec, Epilogue, Nhwc, NhwcI8Mut, NhwcMut, PreparedQConv, QConvOptions,
    QInput, QOutput, Residual, ResidualAdd,
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

#[test]
fn execute_calls_do_not_allocate() {
    let mut rng = Rng(9);
    let (batch, h, w) = (2, 11, 13);
    for (cin, cout, kernel, stride, nonnegative) in [
        (24, 40, 3, 1, false), // direct, channels packing
        (3, 16, 7, 2, false),  // rows packing
        (16, 24, 1, 2, false), // subsampled 1x1
        (32, 72, 3, 1, true),  // row-Winograd
    ] {
        let mut spec = Conv2dSpec::new(cin, cout, kernel, stride, kernel / 2, [h, w]);
        spec.epilogue = Epilogue::new(Activation::Relu6, ResidualAdd::BeforeActivation);
        let weights = rng.vec(cout * cin * kernel * kernel, 0.3);
        let options = QConvOptions {
            nonnegative_input: nonnegative,
            algorithm: None,
        };
        let conv = PreparedQConv::prepare_with(&spec, &weights, None, 0.01, options).unwrap();
        let [oh, ow] = conv.output_size();
        let input: Vec<f32> = rng
            .vec(batch * h * w * cin, 1.0)
            .iter()
            .map(|v| v.abs())
            .collect();
        let residual = rng.vec(batch * oh * ow * cout, 1.0);
        let mut out = vec![0f32; residual.len()];
        let mut out8 = vec![0i8; residual.len()];
        let mut scratch = vec![0u8; conv.scratch_len(3).unwrap()];
        let dims = [batch, oh, ow, cout];
        let mut run = |ctx| {
            conv.execute(
                ctx,
                QInput::F32(Nhwc::new(&input, [batch, h, w, cin]).unwrap()),
                QOutput::F32AndS8 {
                    f32: NhwcMut::new(&mut out, dims).unwrap(),
                    s8: NhwcI8Mut::new(&mut out8, dims),
                    scale: 0.05,
                },
                Residual::Tensor(Nhwc::new(&residual, dims).unwrap()),
                &mut scratch,
            )
            .unwrap();
        };
        // Warm every context first: a worker thread allocates once when it starts (its
        // thread-local state), and the counter sees every thread of the process.
        for ctx in contexts() {
            run(ctx);
        }
        for ctx in contexts() {
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            run(ctx);
            let allocated = ALLOCATIONS.load(Ordering::SeqCst) - before;
            assert_eq!(
                allocated,
                0,
                "{} ({} threads) allocated during execute of {:?}",
                ctx.isa().name(),
                ctx.threads(),
                conv.algorithm()
            );
        }
    }
}
