//! Rendering: [`human`] and [`json`] turn a report into a line, [`escape`] keeps control bytes
//! out of the human view, and [`filter`] decides whether a report is shown at all. [`facts`]
//! settles what a kill means and [`format`](mod@format) how a size, a time or an id reads,
//! for the human view and `oomtrace explain` alike.

pub mod escape;
pub mod facts;
pub mod filter;
pub mod format;
pub mod human;
pub mod json;
