//! Loading and validating configuration. See `model` for what comes out.

mod dest;
mod diag;
mod glob;
pub mod model;
mod params;

pub use dest::parse_dest;
pub use model::*;
