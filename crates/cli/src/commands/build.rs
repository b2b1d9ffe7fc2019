//! `taoctl build`: a model's engine built or loaded through the engine cache.

use crate::CliResult;
use crate::engines::{OpenRequest, open};
use crate::model::is_plan_file;

/// Builds (or finds in the cache) the engine of `request.path`, a model. Returns the lines to print:
/// the outcome sentence, the plan's path, build and load times, the engine's inputs and outputs.
pub fn build(request: &OpenRequest<'_>) -> CliResult<String> {
    if is_plan_file(request.path)? {
        return Err(format!(
            "{} is already an engine plan: `build` takes a model (.etlt, .onnx or .uff)",
            request.path.display()
        ));
    }
    let opened = open(request)?;
    Ok(opened.describe(request.path))
}
