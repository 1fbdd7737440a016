//! Integration tests against real servers the library starts: DynamoDB Local (shared per
//! process) and moto. No mock of SQS or DynamoDB; the function side is a fake Invoke API.

mod launcher;
mod sqs;
mod stream;
mod support;
