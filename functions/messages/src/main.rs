//! `POST /bitrix24/messages`: the Lambda function of the `messages` event family.

use b24_events::Family;
use b24_pipeline::{InitError, RefuseTokenChanges};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), InitError> {
    // Built once per execution environment, borrowed by every invocation. This family has no
    // install/update events, so it never verifies one (no HTTPS client linked).
    let pipeline = b24_pipeline::pipeline_from_env(Family::Messages, |_| {
        Ok::<_, InitError>(RefuseTokenChanges)
    })?;
    b24_pipeline::serve(pipeline).await
}
