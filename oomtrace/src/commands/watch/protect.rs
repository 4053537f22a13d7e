//! The tracer must outlive the OOMs it reports: a watch sets its own `oom_score_adj` to
//! -1000, which the OOM killer never picks, unless `--no-oom-protect` says to leave it alone.

use std::path::Path;

const OOM_SCORE_ADJ: &str = "/proc/self/oom_score_adj";
/// `OOM_SCORE_ADJ_MIN`: never chosen.
const NEVER_KILL: &str = "-1000";

/// Sets the whole process's `oom_score_adj` (threads share it); a failure costs one line, not
/// the watch.
pub fn protect_self() {
    if let Err(why) = write_score(Path::new(OOM_SCORE_ADJ)) {
        crate::say!("{why}");
    }
}

fn write_score(path: &Path) -> Result<(), String> {
    // Set already (`docker run --oom-score-adj`, systemd's OOMScoreAdjust=): nothing to ask.
    if std::fs::read_to_string(path).is_ok_and(|score| score.trim() == NEVER_KILL) {
        return Ok(());
    }
    std::fs::write(path, NEVER_KILL).map_err(|err| {
        // Lowering the score needs CAP_SYS_RESOURCE, which Docker does not grant by default.
        format!(
            "cannot set its own oom_score_adj to {NEVER_KILL} ({err}), so the OOM killer may choose it; grant CAP_SYS_RESOURCE or start it with that score, or give --no-oom-protect to leave it alone"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_minimum_or_says_why_not() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let file = dir.path().join("oom_score_adj");
        write_score(&file).expect("a plain file takes it");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "-1000");
        // Already -1000: not written again, so no privilege is needed.
        let set = dir.path().join("set");
        std::fs::write(&set, "-1000\n").unwrap();
        assert_eq!(write_score(&set), Ok(()));
        assert_eq!(
            std::fs::read_to_string(&set).unwrap(),
            "-1000\n",
            "rewritten"
        );
        let why = write_score(&dir.path().join("missing/oom_score_adj")).unwrap_err();
        assert!(why.starts_with("cannot set its own oom_score_adj to -1000 ("));
        assert!(!why.contains('\n'), "{why}");
    }
}
