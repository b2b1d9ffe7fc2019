//! Packed INT8 convolution weights as a plan file stores them: `PreparedQConv::from_bytes` on
//! arbitrary bytes for small specs chosen by the first bytes. Whatever loads must run and write
//! back to the same bytes; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tao_kernels_int8::{
    Conv2dSpec, Nhwc, NhwcMut, PreparedQConv, QContext, QInput, QOutput, Residual,
};

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, rest @ ..] = data else {
        return;
    };
    let cin = 1 + *a as usize % 20;
    let cout = 1 + *b as usize % 40;
    let k = 1 + *c as usize % 3;
    let stride = 1 + *d as usize % 2;
    let spec = Conv2dSpec::new(cin, cout, k, stride, k / 2, [6, 7]);
    let Ok(conv) = PreparedQConv::from_bytes(spec, rest) else {
        return;
    };
    assert_eq!(conv.to_bytes(), rest);
    let Ok(ctx) = QContext::new(1) else {
        return;
    };
    let [oh, ow] = conv.output_size();
    let input = vec![0.25f32; 6 * 7 * cin];
    let mut output = vec![0f32; oh * ow * cout];
    let mut scratch = vec![0u8; conv.scratch_len(1).unwrap_or(0)];
    let (Ok(x), Ok(y)) = (
        Nhwc::new(&input, [1, 6, 7, cin]),
        NhwcMut::new(&mut output, [1, oh, ow, cout]),
    ) else {
        return;
    };
    let _ = conv.execute(&ctx, QInput::F32(x), QOutput::F32(y), Residual::None, &mut scratch);
});
