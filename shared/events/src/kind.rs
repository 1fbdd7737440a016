//! Event codes and the families that route them.

use serde::Serialize;
use std::fmt;
use strum::VariantArray;

/// The family an event belongs to: one Lambda function and one route per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, VariantArray)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `OnImConnectorMessageAdd/Update/Delete`.
    Messages,
    /// `OnImConnectorDialogStart/Finish`.
    Dialogs,
    /// `OnImConnectorStatusDelete`, `OnImConnectorLineDelete`.
    Connector,
    /// `ONAPPINSTALL`, `ONAPPUPDATE`, `ONAPPUNINSTALL`.
    App,
}

impl Family {
    /// All families, in route order (derived from the enum: a new family is listed by itself).
    pub const ALL: &'static [Family] = Family::VARIANTS;

    /// The family name as it appears in the normalized JSON (`messages`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Messages => "messages",
            Family::Dialogs => "dialogs",
            Family::Connector => "connector",
            Family::App => "app",
        }
    }

    /// The HTTP route this family is served on (`/bitrix24/messages`, ...).
    pub fn route(self) -> &'static str {
        match self {
            Family::Messages => "/bitrix24/messages",
            Family::Dialogs => "/bitrix24/dialogs",
            Family::Connector => "/bitrix24/connector",
            Family::App => "/bitrix24/app",
        }
    }

    /// The events of this family (from [`EventKind::family`], so never out of date).
    pub fn events(self) -> impl Iterator<Item = EventKind> {
        EventKind::ALL
            .iter()
            .copied()
            .filter(move |k| k.family() == self)
    }

    /// Parses a family name (`messages`, `dialogs`, `connector`, `app`), ASCII case-insensitive.
    pub fn parse(name: &str) -> Option<Family> {
        Family::ALL
            .iter()
            .copied()
            .find(|f| f.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the ten supported event codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, VariantArray)]
pub enum EventKind {
    /// `ONIMCONNECTORMESSAGEADD`: an operator's message goes out to the external channel.
    MessageAdd,
    /// `ONIMCONNECTORMESSAGEUPDATE`: an operator edited a message already delivered.
    MessageUpdate,
    /// `ONIMCONNECTORMESSAGEDELETE`: an operator deleted a message already delivered.
    MessageDelete,
    /// `ONIMCONNECTORDIALOGSTART`: a dialog (open-line session) was created.
    DialogStart,
    /// `ONIMCONNECTORDIALOGFINISH`: a dialog was closed.
    DialogFinish,
    /// `ONIMCONNECTORSTATUSDELETE`: the connector was disconnected from a line.
    StatusDelete,
    /// `ONIMCONNECTORLINEDELETE`: an open line was deleted.
    LineDelete,
    /// `ONAPPINSTALL`: the app was installed on a portal.
    AppInstall,
    /// `ONAPPUPDATE`: the app was updated on a portal.
    AppUpdate,
    /// `ONAPPUNINSTALL`: the app was removed from a portal.
    AppUninstall,
}

impl EventKind {
    /// Every supported event, in declaration order (derived from the enum, never a
    /// hand-kept list).
    pub const ALL: &'static [EventKind] = EventKind::VARIANTS;

    /// The upper-case event code (`ONIMCONNECTORMESSAGEADD`, ...).
    pub fn code(self) -> &'static str {
        match self {
            EventKind::MessageAdd => "ONIMCONNECTORMESSAGEADD",
            EventKind::MessageUpdate => "ONIMCONNECTORMESSAGEUPDATE",
            EventKind::MessageDelete => "ONIMCONNECTORMESSAGEDELETE",
            EventKind::DialogStart => "ONIMCONNECTORDIALOGSTART",
            EventKind::DialogFinish => "ONIMCONNECTORDIALOGFINISH",
            EventKind::StatusDelete => "ONIMCONNECTORSTATUSDELETE",
            EventKind::LineDelete => "ONIMCONNECTORLINEDELETE",
            EventKind::AppInstall => "ONAPPINSTALL",
            EventKind::AppUpdate => "ONAPPUPDATE",
            EventKind::AppUninstall => "ONAPPUNINSTALL",
        }
    }

    /// The camel-case name `event.bind` takes (`OnImConnectorMessageAdd`, ...).
    pub fn bind_name(self) -> &'static str {
        match self {
            EventKind::MessageAdd => "OnImConnectorMessageAdd",
            EventKind::MessageUpdate => "OnImConnectorMessageUpdate",
            EventKind::MessageDelete => "OnImConnectorMessageDelete",
            EventKind::DialogStart => "OnImConnectorDialogStart",
            EventKind::DialogFinish => "OnImConnectorDialogFinish",
            EventKind::StatusDelete => "OnImConnectorStatusDelete",
            EventKind::LineDelete => "OnImConnectorLineDelete",
            EventKind::AppInstall => "OnAppInstall",
            EventKind::AppUpdate => "OnAppUpdate",
            EventKind::AppUninstall => "OnAppUninstall",
        }
    }

    /// Parses an event code in any letter case (`OnImConnectorMessageAdd`, `onappinstall`, ...).
    pub fn from_code(code: &str) -> Option<EventKind> {
        let code = code.trim();
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| k.code().eq_ignore_ascii_case(code))
    }

    /// Whether the event installs the app on a portal (ONAPPINSTALL, ONAPPUPDATE): the only
    /// events that may register a portal or change its token.
    pub fn is_install(self) -> bool {
        match self {
            EventKind::AppInstall | EventKind::AppUpdate => true,
            EventKind::MessageAdd
            | EventKind::MessageUpdate
            | EventKind::MessageDelete
            | EventKind::DialogStart
            | EventKind::DialogFinish
            | EventKind::StatusDelete
            | EventKind::LineDelete
            | EventKind::AppUninstall => false,
        }
    }

    /// The family that serves this event.
    pub fn family(self) -> Family {
        match self {
            EventKind::MessageAdd | EventKind::MessageUpdate | EventKind::MessageDelete => {
                Family::Messages
            }
            EventKind::DialogStart | EventKind::DialogFinish => Family::Dialogs,
            EventKind::StatusDelete | EventKind::LineDelete => Family::Connector,
            EventKind::AppInstall | EventKind::AppUpdate | EventKind::AppUninstall => Family::App,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_in_any_case() {
        for &k in EventKind::ALL {
            assert_eq!(EventKind::from_code(k.code()), Some(k));
            assert_eq!(EventKind::from_code(k.bind_name()), Some(k));
            assert_eq!(EventKind::from_code(&k.code().to_lowercase()), Some(k));
            assert!(k.family().events().any(|e| e == k));
        }
        assert_eq!(EventKind::ALL.len(), 10);
        let per_family: usize = Family::ALL.iter().map(|f| f.events().count()).sum();
        assert_eq!(per_family, EventKind::ALL.len());
        assert_eq!(EventKind::from_code("ONCRMDEALADD"), None);
    }
}
