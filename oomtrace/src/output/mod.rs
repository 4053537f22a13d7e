//! Output: how a report reaches the operator and the log pipeline, once oomtrace-core has
//! rendered it. [`sink`] writes it out, each destination from a thread of its own, to stdout
//! and to the [`line_file`]s: `--output` files and the [`journal`]. [`metrics`] counts it for
//! Prometheus; [`stderr`] carries what oomtrace says about itself.

pub mod journal;
pub mod line_file;
pub mod metrics;
pub mod sink;
pub mod stderr;
