//! `POST /bitrix24/app`: the Lambda function of the `app` event family
//! (`ONAPPINSTALL`, `ONAPPUPDATE`, `ONAPPUNINSTALL`).

use b24_events::Family;
use b24_pipeline::{AppInfoVerifier, Bitrix24, InitError, OAuthVerifier, TalkbackConfig};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), InitError> {
    // Built once per execution environment, borrowed by every invocation. With the client id
    // and the client secret's SSM parameter configured, every install and update is verified
    // by refreshing its refresh_token with Bitrix24's OAuth server and the new tokens go to
    // the vault (b24_pipeline::talkback); otherwise an install that changes or restores a
    // portal's token is verified with app.info for BITRIX24_CLIENT_ID (b24_pipeline::verifier).
    match TalkbackConfig::from_env()? {
        Some(talkback) => {
            let env = b24_state::AwsEnv::from_env()?;
            let pipeline = b24_pipeline::pipeline_from_env(Family::App, |config| {
                Bitrix24::from_config(&talkback, &env, &config.table_name)
                    .map(|b24| OAuthVerifier::new(Arc::new(b24)))
            })?;
            b24_pipeline::serve(pipeline).await
        }
        None => {
            let pipeline = b24_pipeline::pipeline_from_env(Family::App, |config| {
                Ok::<_, InitError>(AppInfoVerifier::new(config.verifier.clone()))
            })?;
            b24_pipeline::serve(pipeline).await
        }
    }
}
