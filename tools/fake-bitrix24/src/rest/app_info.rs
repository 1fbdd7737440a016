//! `app.info` (`api-reference/common/system/app-info.md`).

use serde_json::json;

use crate::answer::{ErrorAnswer, MethodResult};
use crate::world::{AuthContext, World};

/// The documented fields. `CODE` is how a caller checks which application answered: the docs
/// show no `client_id` on the portal's `app.info`, and `CODE` defaults to the `client_id`.
pub(super) fn app_info(world: &World, ctx: &AuthContext) -> Result<MethodResult, ErrorAnswer> {
    let portal = world
        .portals
        .get(&ctx.member_id)
        .ok_or_else(ErrorAnswer::invalid_token)?;
    let app = world
        .apps
        .get(&ctx.client_id)
        .ok_or_else(ErrorAnswer::invalid_token)?;
    let lang = &portal.spec.language;
    Ok(MethodResult::new(json!({
        "ID": app.id,
        "CODE": app.spec.code(),
        "VERSION": app.spec.version,
        "STATUS": app.spec.status,
        "INSTALLED": portal.installed,
        "PAYMENT_EXPIRED": "N",
        "DAYS": null,
        "LANGUAGE_ID": lang,
        "LICENSE": format!("{lang}_pro100"),
        "LICENSE_TYPE": "pro100",
        "LICENSE_FAMILY": "pro",
    })))
}
