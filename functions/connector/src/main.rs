//! `POST /bitrix24/connector`: the Lambda function of the `connector` event family.

use b24_events::Family;
use b24_pipeline::RefuseTokenChanges;
use lambda_http::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Built once per execution environment, borrowed by every invocation. This family has no
    // install/update events, so it never verifies a token change (no HTTPS client linked).
    let pipeline = b24_pipeline::pipeline_from_env(Family::Connector, |_| RefuseTokenChanges)?;
    run(service_fn(|request| pipeline.handle(request))).await
}
