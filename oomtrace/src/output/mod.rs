//! Output: how a report reaches the operator and the log pipeline. [`human`] and [`json`]
//! render it, [`filter`] decides whether it is shown at all, [`sink`] writes it out, and
//! [`metrics`] counts it for Prometheus.

pub mod journal;
pub mod metrics;
pub mod sink;
pub mod stderr;
