//! Test fixtures: a mocked API server (tower-test) that asserts the exact calls the operator makes.

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::Value;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

pub fn mock_client() -> (Client, ApiServerVerifier) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "ns"), ApiServerVerifier(handle))
}

pub struct ApiServerVerifier(pub Handle);

impl ApiServerVerifier {
    /// Takes the next request, checks its method and path, answers with `reply(body)`.
    pub async fn expect(&mut self, method: &str, path: &str, reply: impl FnOnce(&Value) -> (u16, Value)) -> Value {
        let (req, send) = self.0.next_request().await.expect("the operator made no further request");
        assert_eq!(req.method().as_str(), method, "method of {}", req.uri());
        assert_eq!(req.uri().path(), path);
        let bytes = req.into_body().collect_bytes().await.expect("request body");
        let body: Value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON request body") };
        let (code, out) = reply(&body);
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&out).expect("json")))
                .expect("response"),
        );
        body
    }

    /// Fails with `why` (and the request's path) if the operator makes any request within 300 ms.
    pub async fn expect_nothing(&mut self, why: &str) {
        let next = tokio::time::timeout(std::time::Duration::from_millis(300), self.0.next_request()).await;
        if let Ok(r) = next {
            panic!("{why}: {:?}", r.map(|r| r.0.uri().clone()));
        }
    }
}
