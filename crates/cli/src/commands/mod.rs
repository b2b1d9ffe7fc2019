pub mod cache;
pub mod decrypt;
pub mod encrypt;
pub mod export_onnx;
pub mod inspect;
