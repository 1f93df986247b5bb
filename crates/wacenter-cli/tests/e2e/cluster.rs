//! A three-node JetStream cluster (every stream and bucket on 3 replicas) losing a node under
//! load: the stream leader killed with SIGKILL and restarted, or frozen for 10 s as a
//! partitioned node would be. Checked from what the simulators recorded and the dead letters:
//! none lost, none twice.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use crate::chaos::{account_for_every_message, deliver_like_gowa};
use crate::stack::*;

const N: usize = 45;

fn message(case: &str, i: usize) -> Value {
    gowa_message(
        &format!("{case}-{i}"),
        RESELLER_PHONE,
        &format!("S.1234 #{i}"),
        Utc::now(),
    )
}

/// The server name (`n0`, `n1`, `n2`) leading `WA_INBOUND`'s replicas now.
async fn inbound_leader(stack: &Stack) -> String {
    let bus = stack.bus().await;
    let mut stream = bus
        .jetstream()
        .get_stream(wacenter_proto::names::INBOUND_STREAM)
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    info.cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("a replicated stream has a leader")
}

/// Sends `N` messages, a third before the fault, a third while it lasts, a third after, each
/// retried like GOWA until ingress takes it.
async fn drive_through(
    (http, ingress): (reqwest::Client, String),
    case: &str,
    fault: impl std::future::Future<Output = ()>,
) {
    let send = |range: std::ops::Range<usize>| {
        let (http, ingress) = (http.clone(), ingress.clone());
        async move {
            let mut taken = 0;
            for i in range {
                let ok =
                    deliver_like_gowa(&http, &ingress, &message(case, i), Duration::from_secs(60))
                        .await;
                taken += usize::from(ok);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            taken
        }
    };
    let mut taken = send(0..N / 3).await;
    let (during, ()) = tokio::join!(send(N / 3..2 * N / 3), fault);
    taken += during;
    taken += send(2 * N / 3..N).await;
    assert_eq!(
        taken, N,
        "ingress took every message once the cluster settled"
    );
}

/// What happens to the stream leader.
#[derive(Clone, Copy)]
enum Fault {
    /// SIGKILL, restarted 5 s later.
    Kill,
    /// SIGSTOP for 10 s: it holds its connections but answers nothing, as a node cut off by a
    /// partition looks to its peers; then SIGCONT.
    Freeze,
}

/// `fault` strikes `WA_INBOUND`'s leader while a third of the messages are on their way.
async fn leader_lost_under_load(fault: Fault) {
    let mut stack = Stack::start_on_cluster(|_| {}).await;
    let leader = inbound_leader(&stack).await;
    let client = (stack.http.clone(), stack.ingress_url.clone());
    let cluster = stack.nats.cluster();
    let (case, what) = match fault {
        Fault::Kill => ("KILL", "killed"),
        Fault::Freeze => ("FREEZE", "frozen 10 s"),
    };
    let strike = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        match fault {
            Fault::Kill => {
                cluster.node(&leader).kill();
                tokio::time::sleep(Duration::from_secs(5)).await;
                cluster.node(&leader).restart();
            }
            Fault::Freeze => {
                cluster.node(&leader).pause();
                tokio::time::sleep(Duration::from_secs(10)).await;
                cluster.node(&leader).resume();
            }
        }
    };
    drive_through(client, case, strike).await;
    account_for_every_message(&stack, N, &format!("cluster leader {leader} {what}")).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_leader_killed_under_load_loses_nothing_and_doubles_nothing() {
    leader_lost_under_load(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_stream_leader_loses_nothing_and_doubles_nothing() {
    leader_lost_under_load(Fault::Freeze).await;
}
