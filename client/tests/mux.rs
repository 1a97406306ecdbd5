//! The stream multiplexer against a fake session server: replies reach their callers whatever
//! their order, and how a stream ended is what its unanswered callers are told.

use std::time::Duration;

use futures::StreamExt;
use tfs_client::mux::{Answer, Ended, Mux};
use tfs_client::proto::{self, session_reply::Result as Res, session_request::Op};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

/// What the fake does with a get, by its block id.
const HOLD: u64 = 0; // answered after the next request's answer
const END_CLEANLY: u64 = 100; // ends the stream with the not-executed trailer
const BREAK: u64 = 200; // ends the stream with a bare error

struct Fake;

#[tonic::async_trait]
impl proto::session_server::Session for Fake {
    type SessionStream = tokio_stream::wrappers::ReceiverStream<Result<proto::SessionReply, Status>>;

    async fn session(
        &self,
        req: Request<Streaming<proto::SessionRequest>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let reply = |id, block_id| {
                let block = Some(proto::Block { id: block_id, ..Default::default() });
                Ok(proto::SessionReply {
                    id,
                    result: Some(Res::Get(proto::GetBlockReply { block, ..Default::default() })),
                })
            };
            let mut held = None;
            while let Some(Ok(r)) = inbound.next().await {
                let Some(Op::Get(g)) = r.op else { continue };
                match g.block_id {
                    HOLD => held = Some(r.id),
                    END_CLEANLY => {
                        let mut s = Status::unavailable("ending");
                        s.metadata_mut()
                            .insert(tfs_nameserver::server::session::UNREAD_TRAILER, "not-executed".parse().unwrap());
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                    BREAK => {
                        let _ = tx.send(Err(Status::internal("broken"))).await;
                        return;
                    }
                    b => {
                        let _ = tx.send(reply(r.id, b)).await;
                        if let Some(h) = held.take() {
                            let _ = tx.send(reply(h, HOLD)).await;
                        }
                    }
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

async fn fake() -> Mux {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(proto::session_server::SessionServer::new(Fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    Mux::open(ch).await.unwrap()
}

fn get(block_id: u64) -> Op {
    Op::Get(proto::GetBlockRequest { block_id, stale: false })
}

fn block_of(a: &Answer) -> Option<u64> {
    match a {
        Answer::Reply(Res::Get(g)) => g.block.as_ref().map(|b| b.id),
        _ => None,
    }
}

#[tokio::test]
async fn replies_out_of_order_reach_their_callers() {
    let m = fake().await;
    let held = m.call(get(HOLD));
    let quick = async {
        // After the held request went out.
        tokio::time::sleep(Duration::from_millis(50)).await;
        m.call(get(7)).await
    };
    let (held, quick) = tokio::join!(held, quick);
    assert_eq!(block_of(&quick), Some(7));
    assert_eq!(block_of(&held), Some(HOLD));
    assert_eq!(m.in_flight(), 0);
}

#[tokio::test]
async fn a_clean_end_tells_the_unanswered_they_were_not_executed() {
    let m = fake().await;
    let held = m.call(get(HOLD));
    let end = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        m.call(get(END_CLEANLY)).await
    };
    let (held, end) = tokio::join!(held, end);
    for a in [held, end] {
        assert!(matches!(a, Answer::Ended(Ended::NotExecuted(_))), "{a:?}");
    }
    assert!(m.is_ended());
    assert!(matches!(m.call(get(7)).await, Answer::Ended(Ended::NotExecuted(_))));
}

#[tokio::test]
async fn a_broken_stream_leaves_the_unanswered_unknown() {
    let m = fake().await;
    let held = m.call(get(HOLD));
    let end = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        m.call(get(BREAK)).await
    };
    let (held, end) = tokio::join!(held, end);
    for a in [held, end] {
        assert!(matches!(a, Answer::Ended(Ended::Broken(_))), "{a:?}");
    }
}

#[tokio::test]
async fn nothing_is_sent_after_close() {
    let m = fake().await;
    assert_eq!(block_of(&m.call(get(3)).await), Some(3));
    m.close();
    assert!(m.is_ended());
    assert!(matches!(m.call(get(4)).await, Answer::Ended(Ended::NotExecuted(_))));
}
