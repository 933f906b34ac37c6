//! Loading and validating configuration. See `model` for what comes out.

pub mod model;

pub use model::*;
