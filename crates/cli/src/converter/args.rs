//! The command line as NVIDIA's tao-converter reads it (getopt style): single-letter flags, values
//! attached (`-knvidia_tlt`) or separate (`-k nvidia_tlt`), flags and the input file in any order,
//! `--` ending the flags, the last of a repeated flag winning except `-p`, which is collected.

use std::path::PathBuf;

use super::{ConverterConfig, Invocation, Precision, Profile, shape_text};
use crate::CliResult;
use crate::engines::BackendChoice;
use crate::overrides::{parse_dims, parse_order, parse_outputs};

pub const USAGE: &str = "usage: tao-converter [-h] -k <key> -d <input_dims> -o <outputs> [-c <calib cache>] [-e <engine>] [-b <calib batch>] [-m <max batch>] [-t fp32|fp16|int8] [-w <workspace>] [-i nchw|nhwc|nc] [-p <profiles>]... [-s] [-u <dla>] [--backend auto|cpu|cuda] [--device-id <gpu>] input_file";

pub const HELP: &str = "\
tao-converter: build an inference engine from a TAO model (.etlt, .onnx or .uff)

usage: tao-converter [-h] -k <key> -d <input_dims> -o <outputs> [-c <calib cache>] [-e <engine>]
                     [-b <calib batch>] [-m <max batch>] [-t fp32|fp16|int8] [-w <workspace>]
                     [-i nchw|nhwc|nc] [-p <profiles>]... [-s] [-u <dla>]
                     [--backend auto|cpu|cuda] [--device-id <gpu>] input_file

  input_file     the model: an .etlt exported by TAO (UFF or ONNX inside), or a plain .onnx or .uff

Flags [default]:
  -h             print this help and exit
  -k <key>       key the model was exported with (e.g. nvidia_tlt); required for an .etlt, unused for
                 .onnx and .uff [the TAO_KEY environment variable]
  -d <dims>      input dims without the batch, comma-separated in the order -i names, e.g. 3,544,960
                 (x and ; also separate); must agree with every dim the model fixes [the model's own]
  -o <outputs>   comma-separated output tensor names, e.g. output_cov/Sigmoid,output_bbox/BiasAdd;
                 unknown names are errors [the model's outputs]
  -e <engine>    where to write the engine [./saved.engine]
  -t <type>      engine precision: fp32, fp16 or int8 [fp32]
  -w <bytes>     maximum workspace size: an integer or a shift such as 1<<30 [1<<30]
  -i <order>     input dimension order: nchw, nhwc or nc [nchw]
  -m <batch>     maximum batch size; with -p profiles the profiles set the batch range [16]
  -p <profile>   optimisation profile <input>,<min>,<opt>,<max>, each shape x-separated with the batch
                 first, e.g. input_1,1x3x544x960,8x3x544x960,16x3x544x960; repeat once per input;
                 min <= opt <= max on every dim, and the dims after the batch must agree with -d and
                 with the model [none: batch 1 to -m]
  -s             strict types: keep every layer at the -t precision, no per-layer fallback [off]
  -u <dla>       DLA core index [none]
 INT8:
  -c <cache>     calibration cache in TensorRT's format (first line TRT-<version>-<algorithm>, any
                 version) [./cal.bin]
  -b <batch>     batch size for calibration; applies only when calibrating, and tao-converter builds
                 from an existing cache, so it is accepted and shown, nothing more [8]
 This project's options (not NVIDIA's):
  --backend <b>  auto, cpu or cuda [auto]: auto builds with the CUDA backend when a usable GPU is
                 present and it builds the precision asked for, else with the CPU backend, and says
                 on stderr which it chose and why; cpu and cuda are taken as asked, and cuda fails
                 with the reason (\"no GPU: ...\") when there is no usable GPU
  --device-id <n> GPU the CUDA backend builds for (CUDA device ordinal) [0]

On this device:
  -e             the engine is this project's plan file (TAOPLAN) for the backend that built it
                 (CPU or CUDA), which `taoctl run`/`bench` and the taoinfer element load; it is
                 not a TensorRT engine.
  -u             there is no DLA here (DLA cores exist on NVIDIA Jetson and DRIVE only): the
                 converter prints a warning and ignores the flag.
  -t fp16        the CUDA backend builds fp16 engines; the CPU backend has FP32 kernels only, and
                 most CPUs have no fast FP16 arithmetic (x86 AVX512-FP16, ARMv8.2 FP16): on the CPU
                 backend the engine is built in fp32, with a warning.
  -t int8        needs an existing calibration cache (-c); without one the converter stops and says
                 how to make one (TAO: tao <model> export --data_type int8 --cal_image_dir <images>
                 --cal_cache_file cal.bin, or taoctl calibrate); it does not calibrate by itself.
                 With a cache it builds an INT8 engine on the CPU backend (the CUDA backend does not
                 build INT8 yet), reports how many cache tensors mapped onto the graph, and which
                 convolutions stayed fp32 and why (the output heads do).
  -s             with -t int8 on the CPU backend, the output heads run in int8 too (they stay fp32
                 otherwise); layers without an int8 kernel still run fp32 and are listed. Other
                 precisions: accepted and recorded.
  -w             accepted and recorded; the CPU backend sizes its memory arena itself.
  stderr         on a terminal, a progress bar over the stages (read, decrypt, import; optimise;
                 build; write) with the elapsed time; otherwise one line per finished stage.
";

/// Long options of this project (not NVIDIA's), each taking a value.
const LONG_OPTIONS: [&str; 2] = ["backend", "device-id"];
/// Flags that take a value.
const VALUE_FLAGS: &str = "kdocebmtwipu";
/// Flags that take none.
const SWITCHES: &str = "sh";

/// Reads the arguments (without the program name). `-h` anywhere asks for the help text.
pub fn parse_args<I, S>(args: I) -> CliResult<Invocation>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut values: Vec<(char, String)> = Vec::new();
    let mut switches: Vec<char> = Vec::new();
    let mut positional: Vec<String> = Vec::new();
    let mut long_values: Vec<(&str, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        }
        if arg == "--help" {
            return Ok(Invocation::Help);
        }
        // This project's long options beside NVIDIA's letters: `--backend cpu`, `--backend=cpu`.
        if let Some(long) = arg.strip_prefix("--")
            && let Some(&name) = LONG_OPTIONS
                .iter()
                .find(|name| long == **name || long.starts_with(&format!("{name}=")))
        {
            let value = match long.strip_prefix(name).and_then(|v| v.strip_prefix('=')) {
                Some(v) => v.to_owned(),
                None => {
                    let Some(next) = args.get(i) else {
                        return Err(format!("--{name}: missing value (see -h)"));
                    };
                    i += 1;
                    next.clone()
                }
            };
            long_values.push((name, value));
            continue;
        }
        if arg.starts_with("--") {
            return Err(format!(
                "{arg}: unknown flag (tao-converter takes single-letter flags; see -h)"
            ));
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            positional.push(arg.clone());
            continue;
        };
        // A cluster of switches may end in one flag that takes a value: `-sk key`, `-sknvidia_tlt`.
        for (at, flag) in cluster.char_indices() {
            if SWITCHES.contains(flag) {
                switches.push(flag);
                continue;
            }
            if !VALUE_FLAGS.contains(flag) {
                return Err(format!("-{flag}: unknown flag (see -h)"));
            }
            let attached = &cluster[at + flag.len_utf8()..];
            let value = if !attached.is_empty() {
                attached.to_owned()
            } else if let Some(next) = args.get(i) {
                i += 1;
                next.clone()
            } else {
                return Err(format!("-{flag}: missing value (see -h)"));
            };
            values.push((flag, value));
            break;
        }
    }
    if switches.contains(&'h') {
        return Ok(Invocation::Help);
    }

    let input = match positional.as_slice() {
        [one] => PathBuf::from(one),
        [] => return Err(format!("input_file: missing ({USAGE})")),
        [first, rest @ ..] => {
            return Err(format!(
                "input_file: only one model may be given, got `{first}` and `{}`",
                rest.join("`, `")
            ));
        }
    };
    let mut config = ConverterConfig::with_defaults(input);
    config.strict = switches.contains(&'s');
    let mut dims_text: Option<String> = None;
    for (flag, value) in values {
        match flag {
            'k' => {
                if value.is_empty() {
                    return Err("-k: the key is empty".into());
                }
                config.key = Some(value);
            }
            'd' => dims_text = Some(value),
            'o' => config.outputs = parse_outputs(&value)?,
            'c' => config.calib_cache = non_empty_path('c', value)?,
            'e' => config.engine_path = non_empty_path('e', value)?,
            'b' => config.calib_batch = positive('b', &value)?,
            'm' => config.max_batch = positive('m', &value)?,
            't' => config.precision = parse_precision(&value)?,
            'w' => config.workspace_bytes = parse_workspace(&value)?,
            'i' => {
                config.input_order = parse_order(&value)?;
                config.input_order_given = true;
            }
            'p' => {
                let profile = parse_profile(&value)?;
                if config.profiles.iter().any(|p| p.input == profile.input) {
                    return Err(format!(
                        "-p: input {} has two profiles (give one -p per input)",
                        profile.input
                    ));
                }
                config.profiles.push(profile);
            }
            'u' => {
                config.dla_core =
                    Some(value.trim().parse::<u32>().map_err(|_| {
                        format!("-u: `{value}` is not a DLA core index (0, 1, ...)")
                    })?);
            }
            _ => return Err(format!("-{flag}: unknown flag (see -h)")),
        }
    }
    for (name, value) in long_values {
        match name {
            "backend" => {
                config.backend = value
                    .parse::<BackendChoice>()
                    .map_err(|e| format!("--backend: {e}"))?;
            }
            _ => {
                config.device_id = value.trim().parse::<usize>().map_err(|_| {
                    format!("--device-id: `{value}` is not a GPU index (0, 1, ...)")
                })?;
            }
        }
    }
    // -d is read last: how many dims it lists depends on -i, wherever that stands.
    if let Some(text) = dims_text {
        let dims = parse_dims(&text, config.input_order)?;
        for profile in &config.profiles {
            check_profile_against_dims(profile, &dims, &text)?;
        }
        config.input_dims = Some(dims);
    }
    Ok(Invocation::Convert(Box::new(config)))
}

fn non_empty_path(flag: char, value: String) -> CliResult<PathBuf> {
    if value.is_empty() {
        return Err(format!("-{flag}: the path is empty"));
    }
    Ok(PathBuf::from(value))
}

fn positive(flag: char, value: &str) -> CliResult<usize> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("-{flag}: `{value}` is not a positive integer"))
}

fn parse_precision(value: &str) -> CliResult<Precision> {
    match value.trim().to_ascii_lowercase().as_str() {
        "fp32" => Ok(Precision::Fp32),
        "fp16" => Ok(Precision::Fp16),
        "int8" => Ok(Precision::Int8),
        _ => Err(format!(
            "-t: unknown precision `{value}` (expected fp32, fp16 or int8)"
        )),
    }
}

/// `-w`: a byte count, written plainly (`1073741824`) or as a shift (`1<<30`, as NVIDIA's help shows).
pub fn parse_workspace(value: &str) -> CliResult<u64> {
    let text = value.trim();
    let bytes = match text.split_once("<<") {
        Some((base, shift)) => {
            let base = base.trim().parse::<u64>().ok();
            let shift = shift.trim().parse::<u32>().ok().filter(|&s| s < 64);
            match (base, shift) {
                (Some(b), Some(s)) => b
                    .checked_mul(1u64 << s)
                    .ok_or_else(|| format!("-w: `{value}` does not fit in 64 bits"))?,
                _ => {
                    return Err(format!(
                        "-w: `{value}` is not a byte count (e.g. 1073741824 or 1<<30)"
                    ));
                }
            }
        }
        None => text
            .parse::<u64>()
            .map_err(|_| format!("-w: `{value}` is not a byte count (e.g. 1073741824 or 1<<30)"))?,
    };
    if bytes == 0 {
        return Err(format!("-w: `{value}` is zero bytes"));
    }
    Ok(bytes)
}

fn axis_name(axis: usize) -> String {
    if axis == 0 {
        "batch".into()
    } else {
        format!("dim {axis}")
    }
}

/// `-p input_1,1x3x544x960,8x3x544x960,16x3x544x960`: three shapes of one rank with
/// min <= opt <= max on every axis.
pub fn parse_profile(value: &str) -> CliResult<Profile> {
    let fields: Vec<&str> = value.split(',').collect();
    if fields.len() < 4 {
        return Err(format!(
            "-p: `{value}` has {} comma-separated fields; expected <input>,<min>,<opt>,<max>",
            fields.len()
        ));
    }
    // Shapes never contain commas; an input name might, so the name is everything before the last three.
    let (name_parts, shapes) = fields.split_at(fields.len() - 3);
    let input = name_parts.join(",").trim().to_owned();
    if input.is_empty() {
        return Err(format!("-p: `{value}` names no input"));
    }
    let parse_shape = |which: &str, text: &str| -> CliResult<Vec<usize>> {
        text.trim()
            .split(['x', 'X'])
            .map(|d| {
                d.trim().parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    format!(
                        "-p: {which} shape `{text}` for input {input}: `{d}` is not a positive integer"
                    )
                })
            })
            .collect()
    };
    let profile = Profile {
        min: parse_shape("min", shapes[0])?,
        opt: parse_shape("opt", shapes[1])?,
        max: parse_shape("max", shapes[2])?,
        input,
    };
    for (which, shape) in &profile.shapes()[1..] {
        if shape.len() != profile.min.len() {
            return Err(format!(
                "-p: {which} shape {} has rank {}, min shape {} has rank {} for input {}",
                shape_text(shape),
                shape.len(),
                shape_text(&profile.min),
                profile.min.len(),
                profile.input
            ));
        }
    }
    for axis in 0..profile.min.len() {
        let (min, opt, max) = (profile.min[axis], profile.opt[axis], profile.max[axis]);
        let name = axis_name(axis);
        if opt < min {
            return Err(format!(
                "-p: opt {name} {opt} is smaller than min {min} for input {}",
                profile.input
            ));
        }
        if max < opt {
            return Err(format!(
                "-p: max {name} {max} is smaller than opt {opt} for input {}",
                profile.input
            ));
        }
    }
    Ok(profile)
}

/// Profiles must describe the dims `-d` gives (everything after the batch).
fn check_profile_against_dims(profile: &Profile, dims: &[usize], dims_text: &str) -> CliResult<()> {
    for (which, shape) in profile.shapes() {
        if shape.len() != dims.len() + 1 {
            return Err(format!(
                "-p: {which} shape {} for input {} has rank {}, but -d {dims_text} describes rank {} (batch included)",
                shape_text(shape),
                profile.input,
                shape.len(),
                dims.len() + 1
            ));
        }
        if shape[1..] != *dims {
            return Err(format!(
                "-p: {which} shape {} for input {} does not match -d {dims_text} after the batch",
                shape_text(shape),
                profile.input
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tao_graph::ir::InputOrder;

    #[test]
    fn workspace_forms() {
        assert_eq!(parse_workspace("1<<30"), Ok(1 << 30));
        assert_eq!(parse_workspace(" 3 << 20 "), Ok(3 << 20));
        assert_eq!(parse_workspace("4096"), Ok(4096));
        assert!(parse_workspace("1<<64").is_err());
        assert!(parse_workspace("3<<63").unwrap_err().contains("64 bits"));
        assert!(parse_workspace("0").unwrap_err().contains("zero"));
        assert!(parse_workspace("1G").unwrap_err().contains("`1G`"));
    }

    #[test]
    fn input_order_is_known() {
        assert_eq!(parse_order("NHWC"), Ok(InputOrder::Nhwc));
    }
}
