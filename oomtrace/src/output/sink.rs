//! Sinks: where rendered reports go. Every line is flushed as it is written, so a crash loses
//! nothing already reported.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use crate::{
    output::{human, json},
    report::Report,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdoutFormat {
    Human,
    Json,
}

#[derive(Debug)]
pub enum SinkError {
    /// The reader went away (`oomtrace --json | head -1`): a normal way to stop.
    StdoutClosed,
    Stdout(io::Error),
    File {
        path: PathBuf,
        error: io::Error,
    },
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StdoutClosed => f.write_str("stdout was closed"),
            Self::Stdout(err) => write!(f, "cannot write to stdout: {err}"),
            Self::File { path, error } => write!(f, "cannot write to {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for SinkError {}

pub struct Sinks {
    format: StdoutFormat,
    file: Option<(PathBuf, File)>,
    // Reused for every report, so the event path does not allocate buffers each time.
    json: Vec<u8>,
    text: String,
}

impl Sinks {
    pub fn open(format: StdoutFormat, output: Option<&Path>) -> Result<Self, String> {
        let file = match output {
            Some(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open --output {}: {e}", path.display()))?;
                Some((path.to_owned(), file))
            }
            None => None,
        };
        Ok(Self {
            format,
            file,
            json: Vec::with_capacity(2048),
            text: String::with_capacity(512),
        })
    }

    pub fn write(&mut self, report: &Report) -> Result<(), SinkError> {
        self.json.clear();
        if self.format == StdoutFormat::Json || self.file.is_some() {
            json::json_line(report, &mut self.json);
        }
        // The file first: it is the record a pipeline keeps even when stdout's reader quit.
        if let Some((path, file)) = &mut self.file {
            file.write_all(&self.json)
                .map_err(|error| SinkError::File {
                    path: path.clone(),
                    error,
                })?;
        }
        let line: &[u8] = match self.format {
            StdoutFormat::Json => &self.json,
            StdoutFormat::Human => {
                self.text.clear();
                human::human_line(report, &mut self.text);
                self.text.as_bytes()
            }
        };
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(line)
            .and_then(|()| stdout.flush())
            .map_err(|err| match err.kind() {
                io::ErrorKind::BrokenPipe => SinkError::StdoutClosed,
                _ => SinkError::Stdout(err),
            })
    }
}
