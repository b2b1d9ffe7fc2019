//! INT8 calibration: the TensorRT calibration-cache format (read any version, write our own), and
//! placing its tensor names on our graph.

mod cache;
mod calibrator;
mod histogram;

pub use cache::{Algorithm, CacheParseError, CalibrationCache, DEFAULT_VERSION, Mapping};
pub use calibrator::{Calibrator, Method};
