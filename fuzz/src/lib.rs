//! What the fuzz targets share beside the code under fuzzing, which is `oomtrace-core`'s (a
//! plain dependency: it has no build script and needs no kernel): [`reports`] builds reports
//! from fuzz bytes and [`unescape`] reads the human view's escapes back, for the renderers'
//! target.

pub mod reports;
pub mod unescape;
