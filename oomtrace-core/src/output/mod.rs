//! Rendering: [`human`] and [`json`] turn a report into a line, [`escape`] keeps control bytes
//! out of the human view, and [`filter`] decides whether a report is shown at all.

pub mod escape;
pub mod filter;
pub mod human;
pub mod json;
