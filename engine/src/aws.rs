//! AWS clients from the SDK's standard environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, the
//! credential chain including the ECS task role), with an operation timeout above SQS's 20 s
//! long poll.

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use std::time::Duration;

/// The clients the engine uses.
#[derive(Debug, Clone)]
pub struct Clients {
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    /// Load the shared configuration and build the clients. `path_style` selects path-style
    /// S3 addressing, for S3-compatible endpoints.
    pub async fn load(path_style: bool) -> Clients {
        let shared = sdk_config().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(path_style)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(&shared);
        Clients { s3, sqs }
    }
}

/// The SDK's shared configuration from the standard environment, with the engine's timeouts
/// (connect 5 s; an attempt 30 s, above SQS's 20 s long poll).
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        // Above the 20 s long poll, so a quiet queue is not an error.
        .operation_attempt_timeout(Duration::from_secs(30))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}
