//! `POST /bitrix24/app`: the Lambda function of the `app` event family
//! (`ONAPPINSTALL`, `ONAPPUPDATE`, `ONAPPUNINSTALL`).

use b24_events::Family;
use b24_pipeline::AppInfoVerifier;
use lambda_http::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Built once per execution environment, borrowed by every invocation. A reinstall that
    // replaces a portal's token is confirmed with Bitrix24's app.info (see b24_pipeline::verifier).
    let pipeline = b24_pipeline::pipeline_from_env(Family::App, |config| {
        AppInfoVerifier::new(config.verifier.clone())
    })?;
    run(service_fn(|request| pipeline.handle(request))).await
}
