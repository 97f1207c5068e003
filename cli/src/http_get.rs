//! One plain-HTTP GET, as `policy test --url` and `quickstart` need it:
//! bounded by a deadline, the whole body read.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// GETs `url` with `headers`, failing if no answer arrives within
/// `timeout`. The status is the caller's to judge.
pub async fn get(
    url: &str,
    headers: &[(http::HeaderName, &str)],
    timeout: Duration,
) -> anyhow::Result<Fetched> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("invalid URL {url:?}"))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let mut request = http::Request::get(uri);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let request = request.body(Empty::new())?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok(Fetched {
            status,
            content_type,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{url}: no answer within {} s", timeout.as_secs()))?
        .with_context(|| format!("cannot GET {url}"))
}
