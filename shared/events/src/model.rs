//! The typed event and its normalized JSON form (schema v1).
//!
//! Every type here serializes to the public **normalized event schema v1** (see the crate docs).
//! Secrets are held in [`Secret`] and are skipped: `auth` only says whether each token was present.

use crate::kind::{EventKind, Family};
use crate::secret::Secret;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// The version of the normalized JSON schema this crate produces.
pub const SCHEMA_VERSION: u32 = 1;

/// One decoded Bitrix24 event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Which event this is.
    pub kind: EventKind,
    /// `event_handler_id`, or `eventId` (Dialog* events); `None` when absent.
    pub handler_id: Option<i64>,
    /// `ts`: when Bitrix24's queue sent the event (Unix seconds).
    pub ts: Option<i64>,
    /// The `auth` block.
    pub auth: Auth,
    /// The event's data, by event shape.
    pub data: EventData,
}

impl Event {
    /// The family that serves this event.
    pub fn family(&self) -> Family {
        self.kind.family()
    }

    /// The normalized JSON (schema v1) as a `serde_json::Value`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the normalized event always serializes")
    }

    /// The normalized JSON (schema v1) as a compact string.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).expect("the normalized event always serializes")
    }

    /// The open line the event concerns, when it names one.
    pub fn line(&self) -> Option<i64> {
        match &self.data {
            EventData::Messages(m) => m.line,
            EventData::Dialogs(d) => d.line,
            EventData::StatusDelete(s) => Some(s.line),
            EventData::LineDelete(l) => Some(l.line),
            EventData::App(_) | EventData::AppUninstall(_) => None,
        }
    }

    /// The connector the event concerns, when it names one (lower-cased).
    pub fn connector(&self) -> Option<&str> {
        match &self.data {
            EventData::Messages(m) => m.connector.as_deref(),
            EventData::Dialogs(d) => d.connector.as_deref(),
            EventData::StatusDelete(s) => Some(&s.connector),
            _ => None,
        }
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Event", 6)?;
        st.serialize_field("event", &self.kind)?;
        st.serialize_field("family", &self.kind.family())?;
        st.serialize_field("handler_id", &self.handler_id)?;
        st.serialize_field("ts", &self.ts)?;
        st.serialize_field("auth", &self.auth)?;
        st.serialize_field("data", &self.data)?;
        st.end()
    }
}

/// The `auth` block: the portal the event comes from, and its tokens.
///
/// Only `member_id` is required to decode. The tokens are [`Secret`]s and never serialize;
/// the normalized JSON carries `has_access_token` / `has_refresh_token` / `has_application_token`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Auth {
    /// The portal's stable identifier: the tenant key.
    pub member_id: String,
    /// Portal address, e.g. `some-domain.bitrix24.ru`.
    pub domain: Option<String>,
    /// The portal's REST endpoint as the event states it (sender-controlled).
    pub client_endpoint: Option<String>,
    /// The OAuth server endpoint.
    pub server_endpoint: Option<String>,
    /// The app's status (`F` free, `L` local, `S` subscription, ...).
    pub status: Option<String>,
    /// Granted scopes, split on commas and/or whitespace.
    pub scope: Vec<String>,
    /// The Bitrix24 user whose action caused the event.
    pub user_id: Option<i64>,
    /// When `access_token` expires (Unix seconds).
    pub expires: Option<i64>,
    /// Seconds until `access_token` expires.
    pub expires_in: Option<i64>,
    /// OAuth access token of the user (absent on many events).
    pub access_token: Option<Secret>,
    /// OAuth refresh token (install events and Dialog* events carry it).
    pub refresh_token: Option<Secret>,
    /// The per-installation token that authenticates every event.
    pub application_token: Option<Secret>,
}

impl Serialize for Auth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Auth", 12)?;
        st.serialize_field("member_id", &self.member_id)?;
        st.serialize_field("domain", &self.domain)?;
        st.serialize_field("client_endpoint", &self.client_endpoint)?;
        st.serialize_field("server_endpoint", &self.server_endpoint)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("scope", &self.scope)?;
        st.serialize_field("user_id", &self.user_id)?;
        st.serialize_field("expires", &self.expires)?;
        st.serialize_field("expires_in", &self.expires_in)?;
        st.serialize_field("has_access_token", &present(&self.access_token))?;
        st.serialize_field("has_refresh_token", &present(&self.refresh_token))?;
        st.serialize_field("has_application_token", &present(&self.application_token))?;
        st.end()
    }
}

fn present(s: &Option<Secret>) -> bool {
    s.as_ref().is_some_and(|s| !s.is_empty())
}

/// The `data` of an event, by shape. Serializes without a tag (the shape follows from `event`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    /// MessageAdd / MessageUpdate / MessageDelete.
    Messages(MessagesData),
    /// DialogStart / DialogFinish.
    Dialogs(DialogsData),
    /// StatusDelete.
    StatusDelete(StatusDeleteData),
    /// LineDelete.
    LineDelete(LineDeleteData),
    /// ONAPPINSTALL / ONAPPUPDATE.
    App(AppData),
    /// ONAPPUNINSTALL.
    AppUninstall(AppUninstallData),
}

/// `data` of the three Message* events.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessagesData {
    /// Connector ID, lower-cased.
    pub connector: Option<String>,
    /// Open line ID.
    pub line: Option<i64>,
    /// The messages (wire key `MESSAGES`, legacy `DATA`), in wire index order.
    pub messages: Vec<MessageItem>,
}

/// One element of `MESSAGES`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessageItem {
    /// The message's identity inside Bitrix24.
    pub im: ImRef,
    /// The message content.
    pub message: MessageBody,
    /// The chat in the external system.
    pub chat: ExternalChat,
}

/// `im`: the message's IDs inside Bitrix24 (required: they identify the message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImRef {
    /// Open-line chat ID in Bitrix24.
    pub chat_id: i64,
    /// Message ID in Bitrix24.
    pub message_id: i64,
}

/// `message`: author, text, external IDs, files.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessageBody {
    /// The Bitrix24 user the message was sent as.
    pub user_id: Option<i64>,
    /// The text with BB-codes, as sent.
    pub text: Option<String>,
    /// External message IDs: empty for MessageAdd; from an array or a single value otherwise.
    pub ids: Vec<String>,
    /// Files (undocumented; kept when Bitrix24 sends them).
    pub files: Vec<FileRef>,
}

/// One element of `message.files` (undocumented, see the spec §2.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileRef {
    /// File name.
    pub name: Option<String>,
    /// File type as Bitrix24 names it (`image`, `file`, ...).
    #[serde(rename = "type")]
    pub file_type: Option<String>,
    /// A Bitrix24 disk link.
    pub link: Option<String>,
    /// Size in bytes.
    pub size: Option<i64>,
}

/// `chat`: the external system's chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExternalChat {
    /// External chat ID (a string).
    pub id: Option<String>,
}

/// `data` of DialogStart / DialogFinish.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DialogsData {
    /// Connector ID, lower-cased.
    pub connector: Option<String>,
    /// Open line ID (a string in the docs; converted).
    pub line: Option<i64>,
    /// The dialogs (wire key `DATA`).
    pub dialogs: Vec<DialogItem>,
}

/// One element of a Dialog* event's `DATA`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DialogItem {
    /// Where the dialog runs.
    pub connector: DialogConnector,
    /// The open-line session.
    pub session: Session,
    /// The chat (external ID).
    pub chat: ExternalChat,
    /// The external user.
    pub user: ExternalUser,
}

/// `connector` inside a dialog element.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DialogConnector {
    /// Connector ID, lower-cased.
    pub connector_id: Option<String>,
    /// Open line ID.
    pub line_id: Option<i64>,
    /// External chat ID (a string).
    pub chat_id: Option<String>,
    /// External user ID (a string).
    pub user_id: Option<String>,
}

/// `session` inside a dialog element.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Session ID (required: it identifies the dialog).
    pub id: i64,
    /// `Y` → true.
    pub closed: Option<bool>,
    /// The previous session's ID.
    pub parent_id: Option<i64>,
    /// Minutes until the session closes.
    pub close_term: Option<i64>,
}

/// `user` inside a dialog element.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExternalUser {
    /// External user ID (a string).
    pub id: Option<String>,
}

/// `data` of StatusDelete: the connector was disconnected from a line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusDeleteData {
    /// Connector ID, lower-cased.
    pub connector: String,
    /// Open line ID.
    pub line: i64,
}

/// `data` of LineDelete: the deleted line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineDeleteData {
    /// Open line ID (wire: scalar `data`, or legacy `data[LINE_ID]` / `data[LINE]`).
    pub line: i64,
}

/// `data` of ONAPPINSTALL / ONAPPUPDATE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppData {
    /// App version (`VERSION`).
    pub version: Option<String>,
    /// `ACTIVE` (`Y` → true).
    pub active: Option<bool>,
    /// `INSTALLED` (`Y` → true; `N` = installation not finished).
    pub installed: Option<bool>,
    /// `LANGUAGE_ID`.
    pub language_id: Option<String>,
}

/// `data` of ONAPPUNINSTALL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppUninstallData {
    /// `LANGUAGE_ID`.
    pub language_id: Option<String>,
    /// `CLEAN` (`1` → true): the user asked to delete the app's data.
    pub clean: bool,
}
