//! Finding containerd's socket the way `ctr` does, and the calls oomtrace makes on it, each
//! bounded in time: a containerd that accepts and never answers costs a timeout, not a hang.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use containerd_client::{
    services::v1::{
        Container, GetContainerRequest, GetRequest, ListContainersRequest, ListNamespacesRequest,
        ListTasksRequest, SubscribeRequest, containers_client::ContainersClient,
        events_client::EventsClient, namespaces_client::NamespacesClient,
        tasks_client::TasksClient, version_client::VersionClient,
    },
    tonic::{self, Code, Request, Streaming, transport::Channel},
    types::{Envelope, v1::Process},
};

/// Where containerd listens unless told otherwise: `ctr`'s default.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// The environment variable `ctr` reads the socket from.
pub const ADDRESS_ENV: &str = "CONTAINERD_ADDRESS";
/// The gRPC metadata key containerd reads a request's namespace from.
const NAMESPACE_HEADER: &str = "containerd-namespace";

/// The socket: `--containerd-socket`, else `CONTAINERD_ADDRESS` (a path, or `unix://` and a
/// path, as `ctr` takes it), else [`DEFAULT_SOCKET`].
pub fn socket_path(flag: Option<&Path>, address: Option<&str>) -> PathBuf {
    if let Some(flag) = flag {
        return flag.to_owned();
    }
    match address.map(str::trim).filter(|a| !a.is_empty()) {
        Some(address) => PathBuf::from(address.strip_prefix("unix://").unwrap_or(address)),
        None => PathBuf::from(DEFAULT_SOCKET),
    }
}

/// A connection to containerd whose every call gives up after `wait`.
#[derive(Clone)]
pub(super) struct Api {
    channel: Channel,
    socket: PathBuf,
    wait: Duration,
}

impl Api {
    pub(super) async fn connect(socket: &Path, wait: Duration) -> Result<Self, String> {
        let channel = tokio::time::timeout(wait, containerd_client::connect(socket))
            .await
            .map_err(|_| format!("{} did not accept within {wait:?}", socket.display()))?
            .map_err(|e| format!("cannot connect to {}: {}", socket.display(), chain(&e)))?;
        Ok(Self {
            channel,
            socket: socket.to_owned(),
            wait,
        })
    }

    /// containerd's version, e.g. `1.6.20~ds1`.
    pub(super) async fn version(&self) -> Result<String, String> {
        let mut client = VersionClient::new(self.channel.clone());
        let answer = self.bounded(client.version(())).await?;
        Ok(answer.version)
    }

    pub(super) async fn namespaces(&self) -> Result<Vec<String>, String> {
        let mut client = NamespacesClient::new(self.channel.clone());
        let answer = self
            .bounded(client.list(ListNamespacesRequest::default()))
            .await?;
        Ok(answer.namespaces.into_iter().map(|n| n.name).collect())
    }

    pub(super) async fn containers(&self, namespace: &str) -> Result<Vec<Container>, String> {
        let mut client = ContainersClient::new(self.channel.clone());
        let request = in_namespace(ListContainersRequest::default(), namespace)?;
        Ok(self.bounded(client.list(request)).await?.containers)
    }

    /// The container `id` in `namespace`; `None` if that namespace has no such container.
    pub(super) async fn container(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Option<Container>, String> {
        let mut client = ContainersClient::new(self.channel.clone());
        let request = in_namespace(GetContainerRequest { id: id.to_owned() }, namespace)?;
        match tokio::time::timeout(self.wait, client.get(request)).await {
            Ok(Ok(answer)) => Ok(answer.into_inner().container),
            Ok(Err(status)) if status.code() == Code::NotFound => Ok(None),
            Ok(Err(status)) => Err(status.message().to_owned()),
            Err(_) => Err(self.no_answer()),
        }
    }

    /// The pid of the init process of container `id`'s task in `namespace`, running or
    /// exited (until the task is deleted); `None` without a task.
    pub(super) async fn task_pid(&self, namespace: &str, id: &str) -> Option<u32> {
        let mut client = TasksClient::new(self.channel.clone());
        let request = in_namespace(
            GetRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            },
            namespace,
        )
        .ok()?;
        let answer = self.bounded(client.get(request)).await.ok()?;
        answer.process.map(|p| p.pid).filter(|&pid| pid > 0)
    }

    /// The processes of `namespace`'s tasks: each task's init process carries its container's
    /// id as its own.
    pub(super) async fn tasks(&self, namespace: &str) -> Result<Vec<Process>, String> {
        let mut client = TasksClient::new(self.channel.clone());
        let request = in_namespace(ListTasksRequest::default(), namespace)?;
        Ok(self.bounded(client.list(request)).await?.tasks)
    }

    /// Every namespace's events from now on. Not bounded in time: containerd sends the
    /// stream's headers with its first event, however long that takes.
    pub(super) fn subscribe(
        &self,
    ) -> impl Future<Output = Result<Streaming<Envelope>, String>> + Send + use<> {
        let mut client = EventsClient::new(self.channel.clone());
        async move {
            match client.subscribe(SubscribeRequest::default()).await {
                Ok(answer) => Ok(answer.into_inner()),
                Err(status) => Err(describe_status(&status)),
            }
        }
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.wait, call).await {
            Ok(Ok(answer)) => Ok(answer.into_inner()),
            Ok(Err(status)) => Err(describe_status(&status)),
            Err(_) => Err(self.no_answer()),
        }
    }

    fn no_answer(&self) -> String {
        format!(
            "{} did not answer within {} s",
            self.socket.display(),
            self.wait.as_secs_f32()
        )
    }
}

fn in_namespace<T>(message: T, namespace: &str) -> Result<Request<T>, String> {
    let mut request = Request::new(message);
    let value = namespace
        .parse()
        .map_err(|_| format!("namespace {namespace:?} cannot be sent as gRPC metadata"))?;
    request.metadata_mut().insert(NAMESPACE_HEADER, value);
    Ok(request)
}

/// A gRPC status as one sentence: its message, and the transport's reason where it has one.
fn describe_status(status: &tonic::Status) -> String {
    let message = status.message();
    match std::error::Error::source(status) {
        Some(source) => format!("{message}: {}", chain(source)),
        None if message.is_empty() => format!("{:?}", status.code()),
        None => message.to_owned(),
    }
}

/// An error and its causes, innermost last: tonic's own say only "transport error".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_found_the_way_ctr_finds_it() {
        let flag = Path::new("/flag.sock");
        let cases: [(Option<&Path>, Option<&str>, &str); 6] = [
            (Some(flag), Some("/env.sock"), "/flag.sock"),
            (None, Some("/env.sock"), "/env.sock"),
            (
                None,
                Some("unix:///run/k3s/containerd/containerd.sock"),
                "/run/k3s/containerd/containerd.sock",
            ),
            (None, Some(""), DEFAULT_SOCKET),
            (None, Some("  "), DEFAULT_SOCKET),
            (None, None, DEFAULT_SOCKET),
        ];
        for (flag, env, want) in cases {
            assert_eq!(socket_path(flag, env), Path::new(want), "{flag:?} {env:?}");
        }
    }
}
