//! `POST /bitrix24/app`: the Lambda function of the `app` event family.

use b24_events::Family;
use lambda_http::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Built once per execution environment, borrowed by every invocation.
    let pipeline = b24_pipeline::pipeline_from_env(Family::App).await?;
    run(service_fn(|request| pipeline.handle(request))).await
}
