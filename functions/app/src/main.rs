//! `POST /bitrix24/app`: the Lambda function of the `app` event family
//! (`ONAPPINSTALL`, `ONAPPUPDATE`, `ONAPPUNINSTALL`).

use b24_events::Family;
use b24_pipeline::{AppInfoVerifier, InitError};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), InitError> {
    // Built once per execution environment, borrowed by every invocation. An install that
    // changes or restores a portal's token is verified with Bitrix24's app.info for
    // BITRIX24_CLIENT_ID (see b24_pipeline::verifier).
    let pipeline = b24_pipeline::pipeline_from_env(Family::App, |config| {
        AppInfoVerifier::new(config.verifier.clone())
    })?;
    b24_pipeline::serve(pipeline).await
}
