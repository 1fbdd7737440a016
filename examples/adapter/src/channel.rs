//! The customer's channel: where operator messages go. Replace [`JsonlChannel`] with your
//! messenger's API client.

use b24_state::changes::{Change, ChangeType, MessageChange};
use serde_json::json;
use std::future::Future;
use std::io::Write;

/// A delivery that did not happen (the channel is down, refused the message, ...). The change
/// stays on the queue and is tried again after the queue's visibility timeout.
#[derive(Debug)]
pub struct DeliveryError(pub String);

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeliveryError {}

/// Sends operator messages to the customer's chat in the external system.
pub trait Channel: Send {
    /// Delivers one operator message change of `change` (whose `message` is `message`):
    /// - `message.created`: send `message.text` / `message.files` to the chat
    ///   `message.chat.id`;
    /// - `message.edited`: replace the text of the message the channel knows as `message.ids`
    ///   (the external IDs its delivery ack reported);
    /// - `message.deleted`: remove that message.
    ///
    /// Returns the channel's own IDs of the message (for `message.created`, the ones it just
    /// assigned; for `message.edited`, the message's ids after the edit, even if unchanged):
    /// they go into the delivery ack. Must be idempotent enough for a retry after a crash
    /// between delivering and deleting the change from the queue.
    fn deliver(
        &mut self,
        change: &Change,
        message: &MessageChange,
    ) -> impl Future<Output = Result<Vec<String>, DeliveryError>> + Send;
}

/// A stand-in channel: one JSON line per delivered message change (to stdout or a file).
pub struct JsonlChannel<W> {
    out: W,
}

impl JsonlChannel<std::io::Stdout> {
    /// Writes to standard output.
    pub fn stdout() -> Self {
        JsonlChannel {
            out: std::io::stdout(),
        }
    }
}

impl JsonlChannel<std::fs::File> {
    /// Appends to the file at `path` (created if missing).
    pub fn append(path: &std::path::Path) -> std::io::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(JsonlChannel { out })
    }
}

impl<W: Write + Send> JsonlChannel<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        JsonlChannel { out }
    }

    /// The writer (e.g. the buffer a test gave).
    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

impl<W: Write + Send> Channel for JsonlChannel<W> {
    async fn deliver(
        &mut self,
        change: &Change,
        message: &MessageChange,
    ) -> Result<Vec<String>, DeliveryError> {
        // A messenger would answer with its message ID; the stand-in makes one up.
        let ids = match change.change_type {
            ChangeType::MessageCreated if message.ids.is_empty() => {
                vec![format!("jsonl-{}", message.im.message_id)]
            }
            _ => message.ids.clone(),
        };
        let line = json!({
            "type": change.change_type,
            "member_id": change.member_id,
            "line": change.line,
            "chat": message.chat.id,
            "im": message.im,
            "ids": ids,
            "text": message.text,
            "files": message.files,
        });
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| DeliveryError(format!("writing the line: {e}")))?;
        Ok(ids)
    }
}
