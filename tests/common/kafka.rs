//! Kafka frames built by hand, and an in-process fake broker for the tests that run without the
//! cluster: a plaintext tokio accept loop that reads request frames and writes back what the
//! test's handler answers.

use std::future::Future;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_tls_proxy::kafka::frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `listener` on the current tokio runtime, one task per connection: reads request
/// frames of up to `max_frame` bytes and, frame by frame, writes what `answer(header, frame)`
/// (length prefix included) resolves to; `None` sends nothing back. A connection ends at
/// EOF or on a read or write error; bytes that are no request frame panic its task.
pub fn serve_fake_broker<A, F>(listener: TcpListener, max_frame: usize, answer: A)
where
    A: Fn(&frame::RequestHeader, &[u8]) -> F + Send + Sync + 'static,
    F: Future<Output = Option<Bytes>> + Send + 'static,
{
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let answer = answer.clone();
            tokio::spawn(async move {
                let reader = frame::FrameReader::new(max_frame);
                let mut buf = BytesMut::new();
                loop {
                    reader.reserve_for_next_read(&mut buf, 0);
                    match socket.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    while let Some(f) = reader.next_frame(&mut buf).unwrap() {
                        let header = frame::request_header(&f).unwrap();
                        if let Some(bytes) = answer(&header, &f).await {
                            if socket.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// A request frame: length, header at `header_version` naming `client_id`, `body` encoded at
/// `version`.
pub fn request_frame<M: Encodable>(
    client_id: &str,
    api_key: i16,
    version: i16,
    header_version: i16,
    correlation_id: i32,
    body: &M,
) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())))
        .encode(&mut out, header_version)
        .unwrap();
    body.encode(&mut out, version).unwrap();
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.to_vec()
}

/// A response frame: length, correlation id, optional header tagged fields, body.
pub fn response_frame(correlation_id: i32, header_version: i16, body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, header_version)
        .unwrap();
    out.put_slice(body);
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.freeze()
}

/// `message` encoded at `version`.
pub fn encode<M: Encodable>(message: &M, version: i16) -> Vec<u8> {
    let mut out = BytesMut::new();
    message.encode(&mut out, version).unwrap();
    out.to_vec()
}
