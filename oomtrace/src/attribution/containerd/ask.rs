//! One-off questions to containerd, for `check`.

use std::{path::Path, time::Duration};

use super::connect::Api;

/// containerd's version and how many namespaces it has, or why it cannot be asked.
pub async fn version(socket: &Path, wait: Duration) -> Result<String, String> {
    let api = Api::connect(socket, wait).await?;
    let version = api.version().await?;
    let namespaces = api.namespaces().await?;
    Ok(format!(
        "{version}, namespaces {}",
        if namespaces.is_empty() {
            "none yet".to_owned()
        } else {
            namespaces.join(", ")
        }
    ))
}
