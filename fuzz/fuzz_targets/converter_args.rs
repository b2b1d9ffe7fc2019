//! Any bytes as a tao-converter command line (NUL-separated arguments): parsed into a configuration
//! or rejected with a one-line error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tao_cli::converter::{Invocation, parse_args, parse_profile, parse_workspace};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let args: Vec<&str> = text.split('\0').collect();
    match parse_args(args.iter().copied()) {
        Ok(Invocation::Convert(config)) => {
            for p in &config.profiles {
                assert!(p.min.len() == p.opt.len() && p.opt.len() == p.max.len());
                for axis in 0..p.min.len() {
                    assert!(p.min[axis] <= p.opt[axis] && p.opt[axis] <= p.max[axis]);
                }
            }
            assert!(config.max_batch > 0 && config.workspace_bytes > 0);
            let _ = config.overrides();
        }
        Ok(Invocation::Help) => {}
        Err(e) => assert!(!e.contains('\n') || text.contains('\n'), "{e}"),
    }
    let _ = parse_profile(&text);
    let _ = parse_workspace(&text);
});
