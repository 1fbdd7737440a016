//! The client secret from SSM Parameter Store (moto's server): read on first use only, once for
//! concurrent first callers, decrypted, kept in memory, a failed read not kept.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_ssm::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_ssm::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region};
use aws_sdk_ssm::types::ParameterType;
use b24_rest::{ClientSecretSource, SecretError, SsmParameter};
use common::bounded;

/// Counts the operations a client runs.
#[derive(Debug, Default)]
struct Counter(AtomicUsize);

#[derive(Debug)]
struct Counting(Arc<Counter>);

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "Counting"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0 .0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn ssm_client(endpoint: &str, counter: Option<Arc<Counter>>) -> aws_sdk_ssm::Client {
    let mut config = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(endpoint);
    if let Some(counter) = counter {
        config = config.interceptor(Counting(counter));
    }
    aws_sdk_ssm::Client::from_conf(config.build())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_secret_is_read_from_ssm_on_first_use_once_and_kept() {
    let moto = tokio::task::spawn_blocking(b24_local::shared_moto_endpoint)
        .await
        .unwrap();
    bounded(async move {
        let admin = ssm_client(&moto, None);
        let counter = Arc::new(Counter::default());
        let reads = || counter.0.load(Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("/b24/test/{}-{nanos}/client-secret", std::process::id());
        let value = "LEAKMARK-ssm-client-secret-0001";

        // Construction reads nothing (the parameter does not even exist yet).
        let param = Arc::new(SsmParameter::new(
            ssm_client(&moto, Some(counter.clone())),
            &name,
        ));
        assert_eq!((reads(), param.is_cached()), (0, false));

        // A failed read is reported and not kept.
        assert_eq!(
            param.client_secret().await,
            Err(SecretError::NotFound { name: name.clone() })
        );
        assert_eq!((reads(), param.is_cached()), (1, false));

        admin
            .put_parameter()
            .name(&name)
            .value(value)
            .r#type(ParameterType::SecureString)
            .send()
            .await
            .expect("put the parameter");

        // Ten concurrent first callers share one GetParameter (decrypted: moto answers
        // `kms:alias/aws/ssm:<value>` without WithDecryption).
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let param = param.clone();
                tokio::spawn(async move { param.client_secret().await })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap().expose(), value);
        }
        assert_eq!((reads(), param.is_cached()), (2, true));

        // Later calls never go to SSM again: the value stays even once the parameter is gone.
        admin.delete_parameter().name(&name).send().await.unwrap();
        for _ in 0..3 {
            assert_eq!(param.client_secret().await.unwrap().expose(), value);
        }
        assert_eq!(reads(), 2);
        assert!(!format!("{param:?}").contains("LEAKMARK"), "{param:?}");
    })
    .await
}
