//! Engines: what a backend chose for a model on a device, written down as a plan, cached on disk
//! under a content address, and loaded again without rebuilding.

pub mod aligned;
pub mod arena;
pub mod backend;
pub mod build;
pub mod cache;
pub mod calibration;
pub mod cpu;
pub mod device;
pub mod model;
pub mod optimize;
pub mod plan;
