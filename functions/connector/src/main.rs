//! `POST /bitrix24/connector`: the Lambda function of the `connector` event family.

use b24_events::Family;
use lambda_http::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Built once per execution environment, borrowed by every invocation.
    let pipeline = b24_pipeline::pipeline_from_env(Family::Connector).await?;
    run(service_fn(|request| pipeline.handle(request))).await
}
