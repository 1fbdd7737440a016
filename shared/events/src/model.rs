//! The typed event and its normalized JSON form (schema v1.1).
//!
//! Every type here serializes to the public **normalized event schema v1.1** (see the crate
//! docs). Secrets are held in [`Secret`] and are skipped: `auth` only says whether each token was
//! present. An event's kind is the variant of its [`EventData`], so a kind without its data (or
//! data of another kind) cannot be built.

use crate::kind::{EventKind, Family};
use crate::secret::Secret;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// One decoded Bitrix24 event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// `event_handler_id`, or `eventId` (Dialog* events); `None` when absent.
    pub handler_id: Option<i64>,
    /// `ts`: when Bitrix24's queue sent the event (Unix seconds).
    pub ts: Option<i64>,
    /// The `auth` block.
    pub auth: Auth,
    /// The event's kind and data.
    pub data: EventData,
}

impl Event {
    /// Which event this is.
    pub fn kind(&self) -> EventKind {
        self.data.kind()
    }

    /// The family that serves this event.
    pub fn family(&self) -> Family {
        self.kind().family()
    }

    /// The normalized JSON (schema v1.1) as a `serde_json::Value`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the normalized event always serializes")
    }

    /// The normalized JSON (schema v1.1) as a compact string.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).expect("the normalized event always serializes")
    }

    /// The open line the event concerns, when it names one.
    pub fn line(&self) -> Option<i64> {
        match &self.data {
            EventData::MessageAdd(m)
            | EventData::MessageUpdate(m)
            | EventData::MessageDelete(m) => m.line,
            EventData::DialogStart(d) | EventData::DialogFinish(d) => d.line,
            EventData::StatusDelete(s) => Some(s.line),
            EventData::LineDelete(l) => Some(l.line),
            EventData::AppInstall(_) | EventData::AppUpdate(_) | EventData::AppUninstall(_) => None,
        }
    }

    /// The Bitrix24 IDs of what the event's items concern, in wire order: message IDs
    /// (`im.message_id`) for Message*, session IDs for Dialog*, none otherwise. For log lines
    /// that must name an event without its content.
    pub fn item_ids(&self) -> Vec<i64> {
        match &self.data {
            EventData::MessageAdd(m)
            | EventData::MessageUpdate(m)
            | EventData::MessageDelete(m) => m.messages.iter().map(|i| i.im.message_id).collect(),
            EventData::DialogStart(d) | EventData::DialogFinish(d) => {
                d.dialogs.iter().map(|i| i.session.id).collect()
            }
            EventData::StatusDelete(_)
            | EventData::LineDelete(_)
            | EventData::AppInstall(_)
            | EventData::AppUpdate(_)
            | EventData::AppUninstall(_) => Vec::new(),
        }
    }

    /// The connector the event concerns, when it names one (lower-cased, as used in keys).
    pub fn connector(&self) -> Option<&str> {
        match &self.data {
            EventData::MessageAdd(m)
            | EventData::MessageUpdate(m)
            | EventData::MessageDelete(m) => m.connector.as_deref(),
            EventData::DialogStart(d) | EventData::DialogFinish(d) => d.connector.as_deref(),
            EventData::StatusDelete(s) => Some(&s.connector),
            EventData::LineDelete(_)
            | EventData::AppInstall(_)
            | EventData::AppUpdate(_)
            | EventData::AppUninstall(_) => None,
        }
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Event", 6)?;
        st.serialize_field("event", &self.kind())?;
        st.serialize_field("family", &self.family())?;
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
    /// The portal's stable identifier: the tenant key. Validated: 1–64 characters of
    /// `[0-9a-z_-]` (real ones are 32 lower-case hex), because it becomes part of storage keys.
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

/// The kind of an event together with its `data`. Serializes as the data alone (the kind is
/// the normalized event's `event` field).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    /// `ONIMCONNECTORMESSAGEADD`: an operator's message goes out to the external channel.
    MessageAdd(MessagesData),
    /// `ONIMCONNECTORMESSAGEUPDATE`: an operator edited a message already delivered.
    MessageUpdate(MessagesData),
    /// `ONIMCONNECTORMESSAGEDELETE`: an operator deleted a message already delivered.
    MessageDelete(MessagesData),
    /// `ONIMCONNECTORDIALOGSTART`: a dialog (open-line session) was created.
    DialogStart(DialogsData),
    /// `ONIMCONNECTORDIALOGFINISH`: a dialog was closed.
    DialogFinish(DialogsData),
    /// `ONIMCONNECTORSTATUSDELETE`: the connector was disconnected from a line.
    StatusDelete(StatusDeleteData),
    /// `ONIMCONNECTORLINEDELETE`: an open line was deleted.
    LineDelete(LineDeleteData),
    /// `ONAPPINSTALL`: the app was installed on a portal.
    AppInstall(AppData),
    /// `ONAPPUPDATE`: the app was updated on a portal.
    AppUpdate(AppData),
    /// `ONAPPUNINSTALL`: the app was removed from a portal.
    AppUninstall(AppUninstallData),
}

impl EventData {
    /// The event kind this data belongs to.
    pub fn kind(&self) -> EventKind {
        match self {
            EventData::MessageAdd(_) => EventKind::MessageAdd,
            EventData::MessageUpdate(_) => EventKind::MessageUpdate,
            EventData::MessageDelete(_) => EventKind::MessageDelete,
            EventData::DialogStart(_) => EventKind::DialogStart,
            EventData::DialogFinish(_) => EventKind::DialogFinish,
            EventData::StatusDelete(_) => EventKind::StatusDelete,
            EventData::LineDelete(_) => EventKind::LineDelete,
            EventData::AppInstall(_) => EventKind::AppInstall,
            EventData::AppUpdate(_) => EventKind::AppUpdate,
            EventData::AppUninstall(_) => EventKind::AppUninstall,
        }
    }
}

/// `data` of the three Message* events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessagesData {
    /// Connector ID, lower-cased (Bitrix24 lower-cases IDs at `imconnector.register`; keys
    /// use this form).
    pub connector: Option<String>,
    /// Connector ID exactly as the portal sent it (`OL_0` has been seen), to echo it back.
    pub connector_as_sent: Option<String>,
    /// Open line ID.
    pub line: Option<i64>,
    /// The messages (wire key `MESSAGES`, legacy `DATA`), in wire index order.
    pub messages: Vec<MessageItem>,
}

/// One element of `MESSAGES`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    /// The message's identity inside Bitrix24.
    pub im: ImRef,
    /// The message content.
    pub message: MessageBody,
    /// The chat in the external system.
    pub chat: ExternalChat,
}

/// `im`: the message's IDs inside Bitrix24 (required: they identify the message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImRef {
    /// Open-line chat ID in Bitrix24.
    pub chat_id: i64,
    /// Message ID in Bitrix24.
    pub message_id: i64,
}

/// `message`: author, text, external IDs, files, params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageBody {
    /// The Bitrix24 user the message was sent as (`0` for automatic messages).
    pub user_id: Option<i64>,
    /// The text with BB-codes, as sent.
    pub text: Option<String>,
    /// External message IDs: empty for MessageAdd; from an array or a single value otherwise.
    pub ids: Vec<String>,
    /// Files (undocumented; kept when Bitrix24 sends them).
    #[serde(default)]
    pub files: Vec<FileRef>,
    /// `message.params` as sent (undocumented): a string map on automatic and system
    /// messages, e.g. `CLASS`, `IMOL_FORM`, `IMOL_VOTE`. Empty when absent.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// One element of `message.files` (undocumented; every non-secret field real portals send).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Bitrix24's file ID, when sent.
    pub id: Option<String>,
    /// File name.
    pub name: Option<String>,
    /// File type as Bitrix24 names it (`image`, `file`, ...).
    #[serde(rename = "type")]
    pub file_type: Option<String>,
    /// MIME type (`image/png`, `application/pdf`, ...).
    pub mime: Option<String>,
    /// A (short) link to the file on the portal (token query parameters removed, as for
    /// `download_link`).
    pub link: Option<String>,
    /// `downloadLink`: a download URL (often relative, `/rest/download.json?...`). Sent with
    /// the viewing user's OAuth token as `auth=...`: every token query parameter (`auth`,
    /// `access_token`, `refresh_token`, `application_token`) is removed, the rest is kept as
    /// sent.
    pub download_link: Option<String>,
    /// Size in bytes.
    pub size: Option<i64>,
    /// `sizef`: the size as the portal formats it for humans (`20,1 КБ`).
    pub size_formatted: Option<String>,
    /// Image width in pixels.
    pub width: Option<i64>,
    /// Image height in pixels.
    pub height: Option<i64>,
}

/// `chat`: the external system's chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalChat {
    /// External chat ID (a string).
    pub id: Option<String>,
}

/// `data` of DialogStart / DialogFinish.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DialogsData {
    /// Connector ID, lower-cased.
    pub connector: Option<String>,
    /// Connector ID exactly as sent.
    pub connector_as_sent: Option<String>,
    /// Open line ID (a string in the docs; converted).
    pub line: Option<i64>,
    /// The dialogs (wire key `DATA`).
    pub dialogs: Vec<DialogItem>,
}

/// One element of a Dialog* event's `DATA`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogConnector {
    /// Connector ID, lower-cased.
    pub connector_id: Option<String>,
    /// Connector ID exactly as sent.
    pub connector_id_as_sent: Option<String>,
    /// Open line ID.
    pub line_id: Option<i64>,
    /// External chat ID (a string).
    pub chat_id: Option<String>,
    /// External user ID (a string).
    pub user_id: Option<String>,
}

/// `session` inside a dialog element.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalUser {
    /// External user ID (a string).
    pub id: Option<String>,
}

/// `data` of StatusDelete: the connector was disconnected from a line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDeleteData {
    /// Connector ID, lower-cased.
    pub connector: String,
    /// Connector ID exactly as sent.
    pub connector_as_sent: String,
    /// Open line ID.
    pub line: i64,
}

/// `data` of LineDelete: the deleted line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDeleteData {
    /// Open line ID (wire: scalar `data`, or legacy `data[LINE_ID]` / `data[LINE]`).
    pub line: i64,
}

/// `data` of ONAPPINSTALL / ONAPPUPDATE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppData {
    /// App version (`VERSION`).
    pub version: Option<String>,
    /// `PREVIOUS_VERSION` (ONAPPUPDATE): the version the portal updated from.
    pub previous_version: Option<String>,
    /// `ACTIVE` (`Y` → true).
    pub active: Option<bool>,
    /// `INSTALLED` (`Y` → true; `N` = installation not finished).
    pub installed: Option<bool>,
    /// `LANGUAGE_ID`.
    pub language_id: Option<String>,
}

/// `data` of ONAPPUNINSTALL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppUninstallData {
    /// `LANGUAGE_ID`.
    pub language_id: Option<String>,
    /// `CLEAN` (`1` → true): the user asked to delete the app's data.
    pub clean: bool,
}

/// Why a normalized event (the JSON this crate serializes) could not be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NormalizedError {
    /// Not the normalized shape (the reason says what is wrong).
    #[error("not a normalized event: {0}")]
    Shape(String),
    /// The `event` code is not one of the supported ones.
    #[error("unsupported event {0}")]
    UnsupportedEvent(String),
}

#[derive(Deserialize)]
struct NormalizedAuth {
    member_id: String,
    domain: Option<String>,
    client_endpoint: Option<String>,
    server_endpoint: Option<String>,
    status: Option<String>,
    #[serde(default)]
    scope: Vec<String>,
    user_id: Option<i64>,
    expires: Option<i64>,
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct Normalized {
    event: String,
    handler_id: Option<i64>,
    ts: Option<i64>,
    auth: NormalizedAuth,
    data: serde_json::Value,
}

impl Event {
    /// Reads back the normalized JSON this crate serializes ([`Event::to_json`]), e.g. from a
    /// parked event. The tokens are not part of it: they come back as `None`.
    pub fn from_normalized(value: &serde_json::Value) -> Result<Event, NormalizedError> {
        let n: Normalized = serde_json::from_value(value.clone())
            .map_err(|e| NormalizedError::Shape(e.to_string()))?;
        let kind = EventKind::from_code(&n.event)
            .ok_or_else(|| NormalizedError::UnsupportedEvent(n.event.clone()))?;
        fn data<T: serde::de::DeserializeOwned>(
            v: serde_json::Value,
        ) -> Result<T, NormalizedError> {
            serde_json::from_value(v).map_err(|e| NormalizedError::Shape(format!("data: {e}")))
        }
        let data = match kind {
            EventKind::MessageAdd => EventData::MessageAdd(data(n.data)?),
            EventKind::MessageUpdate => EventData::MessageUpdate(data(n.data)?),
            EventKind::MessageDelete => EventData::MessageDelete(data(n.data)?),
            EventKind::DialogStart => EventData::DialogStart(data(n.data)?),
            EventKind::DialogFinish => EventData::DialogFinish(data(n.data)?),
            EventKind::StatusDelete => EventData::StatusDelete(data(n.data)?),
            EventKind::LineDelete => EventData::LineDelete(data(n.data)?),
            EventKind::AppInstall => EventData::AppInstall(data(n.data)?),
            EventKind::AppUpdate => EventData::AppUpdate(data(n.data)?),
            EventKind::AppUninstall => EventData::AppUninstall(data(n.data)?),
        };
        let a = n.auth;
        if !crate::is_valid_member_id(&a.member_id) {
            return Err(NormalizedError::Shape(
                "auth.member_id is not allowed".into(),
            ));
        }
        Ok(Event {
            handler_id: n.handler_id,
            ts: n.ts,
            auth: Auth {
                member_id: a.member_id,
                domain: a.domain,
                client_endpoint: a.client_endpoint,
                server_endpoint: a.server_endpoint,
                status: a.status,
                scope: a.scope,
                user_id: a.user_id,
                expires: a.expires,
                expires_in: a.expires_in,
                access_token: None,
                refresh_token: None,
                application_token: None,
            },
            data,
        })
    }
}
