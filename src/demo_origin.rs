//! The bundled demo origin, a module of the `strait` binary (not of the
//! library): a small HTTP server that answers every request with the request
//! it received (method, path, query, headers, body size) as JSON. It backs
//! the built-in configuration so `cargo run` works with nothing else.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// Starts the demo origin on `addr` (port 0 picks one) on its own thread and
/// returns the address it listens on.
pub(crate) fn start(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("strait-demo-origin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let Ok((stream, peer)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| echo(req, peer));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(local)
}

async fn echo(
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, mut body) = req.into_parts();
    // Count the body without keeping it.
    let mut body_bytes = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            body_bytes += data.len() as u64;
        }
    }
    let mut headers: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value =
            serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::Array(list)) => list.push(value),
            Some(existing) => *existing = serde_json::Value::Array(vec![existing.clone(), value]),
            None => {
                headers.insert(name.as_str().to_string(), value);
            }
        }
    }
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_bytes": body_bytes,
        "origin_peer": peer.to_string(),
    });
    let mut text = serde_json::to_vec_pretty(&json).unwrap_or_default();
    text.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
