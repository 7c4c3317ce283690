//! What a runbook is: the YAML mirror (`spec`), its validation into the model
//! the rest of the code trusts (`validate`, `model`), and the loader that reads
//! a directory and returns the good runbooks and every error (`load`), with the
//! deployment's settings of each runbook applied (`settings`), giving each
//! name to one file (`admit`).

mod admit;
mod fields;
mod hints;
mod load;
mod model;
mod registry;
pub(crate) mod settings;
pub(crate) mod spec;
mod steps;
mod triggers;
mod trust;
mod validate;
mod yaml_index;

pub use admit::Candidates;
pub use hints::{did_you_mean, timezone as timezone_hint};
pub use load::{FileResult, LoadError, Loaded, Loader};
pub use model::*;
pub use registry::{Changes, Registry};
pub use settings::Settings;
pub use triggers::parse_cron;
