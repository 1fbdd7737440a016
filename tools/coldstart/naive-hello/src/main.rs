//! The naive SDK hello of the cold-start comparison (`tools/coldstart`): what a first
//! Lambda + DynamoDB function usually looks like. The default `aws-config` provider chain
//! and the DynamoDB client are built at init; every invoke does one `GetItem` on
//! `TABLE_NAME` and answers 200 in the API Gateway v2 shape.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = Client::new(&config);
    let table = std::env::var("TABLE_NAME")?;
    run(service_fn(|event: LambdaEvent<Value>| {
        handler(&client, &table, event)
    }))
    .await
}

async fn handler(client: &Client, table: &str, _event: LambdaEvent<Value>) -> Result<Value, Error> {
    let item = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S("hello".into()))
        .key("sk", AttributeValue::S("hello".into()))
        .send()
        .await?
        .item;
    Ok(json!({
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json!({"hello": "world", "found": item.is_some()}).to_string(),
        "isBase64Encoded": false
    }))
}
