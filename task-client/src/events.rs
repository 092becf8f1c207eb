//! A task's server-sent events, as task views.

use futures::Stream;
use task_api::views::TaskView;

use crate::ClientError;

/// The events of one task (`GET /task/{task_id}/events`): the task at each change. The
/// stream ends after the task's last status, or when the service closes it (e.g. at shutdown).
#[derive(Debug)]
pub struct TaskEvents {
    url: String,
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl TaskEvents {
    pub(crate) fn new(url: String, response: reqwest::Response) -> Self {
        Self {
            url,
            response,
            buffer: Vec::new(),
        }
    }

    /// The task at its next change, or None once the stream has ended.
    pub async fn next(&mut self) -> Result<Option<TaskView>, ClientError> {
        loop {
            while let Some(end) = find_blank_line(&self.buffer) {
                let block: Vec<u8> = self.buffer.drain(..end).collect();
                if let Some(data) = event_data(&block) {
                    return serde_json::from_str(&data).map(Some).map_err(|e| {
                        ClientError::Decode {
                            method: "GET".into(),
                            url: self.url.clone(),
                            reason: format!("an event is not a task: {e}"),
                        }
                    });
                }
            }
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|source| ClientError::Transport {
                    method: "GET".into(),
                    url: self.url.clone(),
                    source,
                })?;
            match chunk {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }

    /// The events as a [`Stream`].
    pub fn into_stream(self) -> impl Stream<Item = Result<TaskView, ClientError>> {
        futures::stream::unfold(Some(self), |events| async move {
            let mut events = events?;
            match events.next().await {
                Ok(Some(task)) => Some((Ok(task), Some(events))),
                Ok(None) => None,
                Err(err) => Some((Err(err), None)),
            }
        })
    }
}

/// The end (past the separator) of the first event block in `buffer`, if one is complete.
fn find_blank_line(buffer: &[u8]) -> Option<usize> {
    let lf = buffer
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|at| at + 2);
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The `data` of an event block (its `data:` lines joined by newlines), None for a comment or
/// keep-alive.
fn event_data(block: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(block);
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_on_blank_lines_and_comments_carry_no_data() {
        let stream = b": keep-alive\n\nevent: task\nid: 1\ndata: {\"a\":\ndata: 1}\n\nrest";
        let first = find_blank_line(stream).expect("a block");
        assert_eq!(event_data(&stream[..first]), None);
        let rest = &stream[first..];
        let second = find_blank_line(rest).expect("a block");
        assert_eq!(event_data(&rest[..second]).as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(find_blank_line(&rest[second..]), None);
        assert_eq!(find_blank_line(b"data: x\r\n\r\n"), Some(11));
    }
}
