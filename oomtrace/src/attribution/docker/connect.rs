//! Where Docker is and how to reach it, in words a person can act on when it cannot be.

use std::{
    io,
    path::{Path, PathBuf},
};

use bollard::{API_DEFAULT_VERSION, Docker};

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Where to reach Docker: `--docker-socket`, else `DOCKER_HOST` as the docker CLI reads it,
/// else the default socket.
pub fn socket_path(flag: Option<&Path>, docker_host: Option<&str>) -> Result<PathBuf, String> {
    if let Some(path) = flag {
        return Ok(path.to_owned());
    }
    match docker_host.filter(|h| !h.is_empty()) {
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(host) => match host.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') => Ok(PathBuf::from(path)),
            _ => Err(format!(
                "DOCKER_HOST={host} is not a unix socket (unix:///path), and oomtrace reads Docker only over one: give --docker-socket PATH"
            )),
        },
    }
}

/// A client of the socket, each request given `timeout_secs`. bollard connects lazily and
/// words a refused socket in transport jargon; a plain connect first gives the reason in words.
pub(super) async fn client(socket: &Path, timeout_secs: u64) -> Result<Docker, String> {
    if let Err(err) = tokio::net::UnixStream::connect(socket).await {
        return Err(describe_connect_error(socket, &err));
    }
    Docker::connect_with_unix(&socket.to_string_lossy(), timeout_secs, API_DEFAULT_VERSION)
        .map_err(|e| e.to_string())
}

/// A [`client`] that has answered as a Docker API, at the version both speak.
pub(super) async fn connect(socket: &Path, timeout_secs: u64) -> Result<Docker, String> {
    client(socket, timeout_secs)
        .await?
        .negotiate_version()
        .await
        .map_err(|e| format!("{} does not answer as a Docker API: {e}", socket.display()))
}

/// Why a unix socket cannot be reached, in words a person can act on.
pub(super) fn describe_connect_error(socket: &Path, err: &io::Error) -> String {
    let path = socket.display();
    match err.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "permission denied on {path}: run oomtrace as root, or as a member of the socket's group (usually `docker`)"
        ),
        io::ErrorKind::NotFound => {
            format!("{path} does not exist: is the Docker daemon installed and running?")
        }
        io::ErrorKind::ConnectionRefused => {
            format!("connection refused at {path}: the Docker daemon is not listening")
        }
        _ => format!("cannot connect to {path}: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_comes_from_the_flag_then_docker_host() {
        type Case<'a> = (Option<&'a Path>, Option<&'a str>, Result<&'a str, &'a str>);
        let flag = Path::new("/run/other.sock");
        let cases: [Case; 6] = [
            (Some(flag), Some("unix:///x.sock"), Ok("/run/other.sock")),
            (
                None,
                Some("unix:///run/user/1000/docker.sock"),
                Ok("/run/user/1000/docker.sock"),
            ),
            (None, None, Ok(DEFAULT_SOCKET)),
            (None, Some(""), Ok(DEFAULT_SOCKET)),
            (
                None,
                Some("tcp://10.0.0.1:2375"),
                Err("is not a unix socket"),
            ),
            (None, Some("unix://relative"), Err("is not a unix socket")),
        ];
        for (flag, host, want) in cases {
            let got = socket_path(flag, host);
            match want {
                Ok(path) => assert_eq!(got, Ok(PathBuf::from(path)), "{host:?}"),
                Err(part) => assert!(got.unwrap_err().contains(part), "{host:?}"),
            }
        }
    }

    #[test]
    fn connection_errors_say_what_to_do() {
        let socket = Path::new("/var/run/docker.sock");
        let cases = [
            (io::ErrorKind::PermissionDenied, "docker` group"),
            (
                io::ErrorKind::NotFound,
                "is the Docker daemon installed and running",
            ),
            (io::ErrorKind::ConnectionRefused, "not listening"),
        ];
        for (kind, part) in cases {
            let said = describe_connect_error(socket, &io::Error::from(kind));
            assert!(said.contains(part) || said.contains("`docker`"), "{said}");
            assert!(said.contains("/var/run/docker.sock"), "{said}");
            assert!(!said.contains("hyper"), "{said}");
        }
    }
}
