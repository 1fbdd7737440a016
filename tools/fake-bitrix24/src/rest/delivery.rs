//! `imconnector.send.status.delivery`
//! (`api-reference/imopenlines/imconnector/imconnector-send-status-delivery.md`).
//!
//! `CONNECTOR`, `LINE`, `MESSAGES` are required (`ERROR_ARGUMENT` "… is null or empty", as
//! documented). Each element must be `{im:{chat_id,message_id}, message:{id:[…], date},
//! chat:{id}}`; the docs give no error for a malformed element, so the fake answers
//! `ERROR_ARGUMENT` naming the field — stricter than Bitrix24 may be, to catch client bugs.

use serde_json::{json, Map, Value};

use crate::answer::{ErrorAnswer, MethodResult};
use crate::params::{get, integer, items, non_empty_text, text};
use crate::records::{DeliveredMessage, Delivery};
use crate::world::{AuthContext, World, MAX_DELIVERIES};

pub(super) fn record(
    world: &mut World,
    now: f64,
    ctx: &AuthContext,
    params: &Map<String, Value>,
    batch_command: Option<&str>,
) -> Result<MethodResult, ErrorAnswer> {
    let connector = non_empty_text(params, "CONNECTOR")
        .ok_or_else(|| ErrorAnswer::argument_null("CONNECTOR"))?;
    let line = non_empty_text(params, "LINE").ok_or_else(|| ErrorAnswer::argument_null("LINE"))?;
    let line = line
        .trim()
        .parse::<i64>()
        .map_err(|_| ErrorAnswer::argument("Invalid LINE: an integer is required"))?;
    let list = get(params, "MESSAGES")
        .and_then(items)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ErrorAnswer::argument_null("MESSAGES"))?;
    let messages = list
        .iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let portal = world
        .portals
        .get_mut(&ctx.member_id)
        .ok_or_else(ErrorAnswer::invalid_token)?;
    portal.deliveries.push_back(Delivery {
        at: now.floor() as i64,
        connector,
        line,
        messages,
        batch_command: batch_command.map(str::to_string),
    });
    while portal.deliveries.len() > MAX_DELIVERIES {
        portal.deliveries.pop_front();
    }
    Ok(MethodResult::new(json!({"SUCCESS": true, "DATA": []})))
}

fn message(i: usize, value: &Value) -> Result<DeliveredMessage, ErrorAnswer> {
    let bad = |path: &str, what: &str| {
        ErrorAnswer::argument(format!("Invalid MESSAGES[{i}]{path}: {what}"))
    };
    let object = |v: Option<&Value>, path: &str| -> Result<Map<String, Value>, ErrorAnswer> {
        v.and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| bad(path, "an object is required"))
    };
    let positive = |v: Option<&Value>, path: &str| -> Result<i64, ErrorAnswer> {
        v.and_then(integer)
            .filter(|n| *n > 0)
            .ok_or_else(|| bad(path, "a positive integer is required"))
    };
    let element = object(Some(value), "")?;
    let im = object(element.get("im"), "[im]")?;
    let message = object(element.get("message"), "[message]")?;
    let chat = object(element.get("chat"), "[chat]")?;
    let chat_id = positive(im.get("chat_id"), "[im][chat_id]")?;
    let message_id = positive(im.get("message_id"), "[im][message_id]")?;
    let ids = message
        .get("id")
        .filter(|v| v.is_array() || v.is_object())
        .and_then(items)
        .ok_or_else(|| {
            bad(
                "[message][id]",
                "an array of ids is required, even for one message",
            )
        })?;
    let external_ids = ids
        .iter()
        .map(|v| text(v).filter(|s| !s.is_empty()))
        .collect::<Option<Vec<_>>>()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| bad("[message][id]", "non-empty string ids are required"))?;
    let date = match message.get("date") {
        None => None,
        Some(v) => {
            Some(integer(v).ok_or_else(|| bad("[message][date]", "a Unix time is required"))?)
        }
    };
    let external_chat_id = chat
        .get("id")
        .and_then(text)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("[chat][id]", "a non-empty string is required"))?;
    Ok(DeliveredMessage {
        chat_id,
        message_id,
        external_ids,
        date,
        external_chat_id,
    })
}
