//! The bus against a real nats-server: idempotency claims here, the worker loop in `worker`.

use std::time::Duration;

use wacenter_bus::claims::{Claim, ClaimRecord, ClaimState, Claims};
use wacenter_bus::{Bus, Topology};
use wacenter_proto::names;
use wacenter_test_support::NatsServer;

mod worker;

async fn claims(nats: &NatsServer) -> Claims {
    let bus = Bus::connect(&nats.url(), "test", Topology::default())
        .await
        .unwrap();
    bus.ensure_topology().await.unwrap();
    Claims::new(bus.bucket(names::FORWARDED_BUCKET).await.unwrap())
}

#[tokio::test]
async fn the_first_claim_wins_and_later_ones_see_it() {
    let nats = NatsServer::start();
    let claims = claims(&nats).await;
    let ours = ClaimRecord::new(ClaimState::InProgress, 7);
    assert!(matches!(
        claims.claim("k1", &ours).await.unwrap(),
        Claim::New { .. }
    ));
    match claims
        .claim("k1", &ClaimRecord::new(ClaimState::InProgress, 8))
        .await
        .unwrap()
    {
        Claim::Existing { record, .. } => assert_eq!(record, ours),
        other => panic!("a second claim must see the first: {other:?}"),
    }
}

/// async-nats answers a create whose acknowledgement was lost by reading the key: finding our
/// own record there, the claim is ours, not "someone else's, still in progress".
#[tokio::test]
async fn our_own_claim_that_landed_is_ours() {
    let nats = NatsServer::start();
    let claims = claims(&nats).await;
    let ours = ClaimRecord::new(ClaimState::InProgress, 7);
    claims.claim("k1", &ours).await.unwrap();
    // The same create again, as async-nats does after a lost acknowledgement.
    assert!(matches!(
        claims.claim("k1", &ours).await.unwrap(),
        Claim::New { .. }
    ));
    // Another delivery's claim of the same message (same seq, its own moment) is not ours.
    let again = ClaimRecord::new(ClaimState::InProgress, 7);
    assert!(matches!(
        claims.claim("k1", &again).await.unwrap(),
        Claim::Existing { .. }
    ));
}

/// A claim whose acknowledgement was lost (NATS failed) before anything was sent is given back,
/// so the redelivery sends instead of calling it uncertain; nobody else's record is touched.
#[tokio::test]
async fn only_our_own_unstarted_claim_is_given_back() {
    let nats = NatsServer::start();
    let claims = claims(&nats).await;
    let ours = ClaimRecord::new(ClaimState::InProgress, 7);
    claims.claim("k1", &ours).await.unwrap();
    claims.release_unstarted("k1", &ours).await;
    let (record, revision) = claims.get("k1").await.unwrap().unwrap();
    assert_eq!((record.state, record.seq), (ClaimState::Claimed, 7));

    // A redelivery took it again: its in_progress is not ours to give back, even with our seq.
    let theirs = ClaimRecord::new(ClaimState::InProgress, 7);
    claims.advance("k1", &theirs, revision).await.unwrap();
    claims.release_unstarted("k1", &ours).await;
    assert_eq!(claims.get("k1").await.unwrap().unwrap().0, theirs);

    // Nothing landed yet: a `claimed` fence goes in, so our write landing late (the client
    // sends what it kept while disconnected) fails instead of leaving an `in_progress` behind.
    claims.release_unstarted("k2", &ours).await;
    let (fence, _) = claims.get("k2").await.unwrap().unwrap();
    assert_eq!((fence.state, fence.seq), (ClaimState::Claimed, 7));
    match claims.claim("k2", &ours).await.unwrap() {
        Claim::Existing { record, .. } => assert_eq!(record, fence),
        other => panic!("the late claim must fail against the fence: {other:?}"),
    }
}

/// An outcome that already landed (its acknowledgement lost) is recognised, not retried for a
/// minute against a revision that moved on.
#[tokio::test]
async fn an_outcome_that_landed_is_recognised() {
    let nats = NatsServer::start();
    let claims = claims(&nats).await;
    let ours = ClaimRecord::new(ClaimState::InProgress, 7);
    let revision = match claims.claim("k1", &ours).await.unwrap() {
        Claim::New { revision } => revision,
        other => panic!("{other:?}"),
    };
    let done = ClaimRecord::new(ClaimState::Done, 7);
    claims.advance("k1", &done, revision).await.unwrap();
    // Same write again at the old revision, as after a lost acknowledgement. Unrecognised, it
    // would retry for over a minute before giving up.
    let retried = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        claims.advance_durably("k1", &done, revision),
    )
    .await;
    assert!(retried.is_ok(), "the landed write was not recognised");
    assert_eq!(claims.get("k1").await.unwrap().unwrap().0, done);
}

/// `NATS_URL` may list several servers (a cluster): the service connects through any that
/// answers, here the second after a dead first one.
#[tokio::test]
async fn nats_url_takes_a_comma_separated_list() {
    let nats = NatsServer::start();
    let dead = wacenter_test_support::free_port();
    let list = format!("nats://127.0.0.1:{dead}, {}", nats.url());
    let bus = Bus::connect(&list, "test", Topology::default())
        .await
        .expect("a list of servers is a valid NATS_URL");
    bus.ensure_topology().await.unwrap();
    let ack = bus
        .publish(
            "wa.inbound.gowa",
            "list-1",
            wacenter_bus::HeaderMap::new(),
            "{}".into(),
        )
        .await
        .unwrap();
    assert!(!ack.duplicate);
    let err = wacenter_bus::server_addrs("nats://127.0.0.1:4222,nats://bad host:x")
        .expect_err("a bad entry is refused");
    assert!(err.to_string().contains("bad host"), "{err}");
    assert!(wacenter_bus::server_addrs(" , ").is_err());
}

/// Whether the owner of an `in_progress` record is alive is read from its lease renewals, on the
/// reader's own clock: an owner whose clock is an hour ahead of or behind the reader's is alive
/// while it renews, and gone once it stops.
#[tokio::test(flavor = "multi_thread")]
async fn the_owner_is_judged_by_its_lease_not_by_clocks() {
    use wacenter_bus::claims::Owner;
    let nats = NatsServer::start();
    let claims = claims(&nats).await;
    for (key, skew) in [("ahead", 3600), ("behind", -3600)] {
        let mut ours = ClaimRecord::new(ClaimState::InProgress, 7);
        ours.at += chrono::Duration::seconds(skew);
        let Claim::New { revision } = claims.claim(key, &ours).await.unwrap() else {
            panic!("fresh key");
        };
        // The owner's call takes 8 s: longer than a reader's look, shorter than its patience.
        let owner = {
            let (claims, ours) = (claims.clone(), ours.clone());
            tokio::spawn(async move {
                claims
                    .hold(
                        key,
                        &ours,
                        revision,
                        tokio::time::sleep(Duration::from_secs(8)),
                    )
                    .await
                    .1
            })
        };
        let (_, seen) = claims.get(key).await.unwrap().unwrap();
        assert_eq!(
            claims.owner(key, seen).await.unwrap(),
            Owner::Alive,
            "{key}"
        );
        let last = owner.await.unwrap();
        // The owner died without writing an outcome: nobody renews any more.
        assert_eq!(claims.owner(key, last).await.unwrap(), Owner::Gone, "{key}");
    }
}

/// Each kind of record lives as long as its promise needs and no longer (nats-server keeps
/// memory for every live record): an hour, a day for outbox rows with a `kode`. A topology
/// declared by an older version (8 days everywhere) is brought down to that.
#[tokio::test]
async fn each_record_kind_lives_as_long_as_its_promise_needs() {
    let nats = NatsServer::start();
    let bus = Bus::connect(&nats.url(), "test", Topology::default())
        .await
        .unwrap();
    bus.jetstream()
        .create_stream(wacenter_bus::kv_bucket_stream(
            names::FORWARDED_BUCKET,
            Duration::from_secs(8 * 24 * 3600),
            1,
        ))
        .await
        .unwrap();
    bus.ensure_topology().await.unwrap();
    let hour = Duration::from_secs(3600);
    for (bucket, life) in [
        (names::FORWARDED_BUCKET, hour),
        (names::REPLIED_BUCKET, hour),
        (names::OWN_MESSAGES_BUCKET, hour),
        (names::DELIVERED_BUCKET, 24 * hour),
    ] {
        let stream = bus
            .jetstream()
            .get_stream(format!("KV_{bucket}"))
            .await
            .unwrap();
        let config = &stream.cached_info().config;
        assert_eq!(config.max_age, life, "{bucket}");
        assert!(!config.allow_direct, "{bucket}: reads go to the leader");
    }
    assert_eq!(names::outbound_bucket(Some(99120)), names::DELIVERED_BUCKET);
    assert_eq!(names::outbound_bucket(None), names::REPLIED_BUCKET);
}

/// `begin` is the one state machine both roles run: what a delivery finds, in each state.
#[tokio::test(flavor = "multi_thread")]
async fn begin_tells_each_delivery_where_it_stands() {
    use wacenter_bus::claims::Begun;
    let nats = NatsServer::start();
    let claims = claims(&nats).await;
    let ours = ClaimRecord::new(ClaimState::InProgress, 7);
    let Begun::Fresh { revision } = claims.begin("k", &ours).await.unwrap() else {
        panic!("the first delivery holds the claim");
    };
    // Another copy of the message (another stream sequence).
    let copy = ClaimRecord::new(ClaimState::InProgress, 8);
    assert_eq!(
        claims.begin("k", &copy).await.unwrap(),
        Begun::Duplicate(ours.clone())
    );
    // Given back before the call: the next delivery of the same message takes it over.
    claims.release_unstarted("k", &ours).await;
    let again = ClaimRecord::new(ClaimState::InProgress, 7);
    let Begun::Fresh { revision: taken } = claims.begin("k", &again).await.unwrap() else {
        panic!("a claim given back is taken over");
    };
    assert!(taken > revision);
    // Done, and failed: said with the record.
    let done = ClaimRecord::new(ClaimState::Done, 7);
    claims.advance("k", &done, taken).await.unwrap();
    let redelivery = ClaimRecord::new(ClaimState::InProgress, 7);
    assert_eq!(
        claims.begin("k", &redelivery).await.unwrap(),
        Begun::Done(done)
    );
    let failed = ClaimRecord::new(ClaimState::Failed, 9);
    claims.claim("f", &failed).await.unwrap();
    assert_eq!(
        claims
            .begin("f", &ClaimRecord::new(ClaimState::InProgress, 9))
            .await
            .unwrap(),
        Begun::Failed(failed)
    );
    // In progress and nobody renewing it: the owner is gone.
    claims
        .claim("u", &ClaimRecord::new(ClaimState::InProgress, 5))
        .await
        .unwrap();
    assert_eq!(
        claims
            .begin("u", &ClaimRecord::new(ClaimState::InProgress, 5))
            .await
            .unwrap(),
        Begun::Uncertain
    );
}

/// Every OtomaX server's lane has consumers of its own on the work-queue streams, which take
/// one consumer per subject: the lanes' filters must never overlap, and a deployment that
/// started with one unfiltered `forwarder` consumer (before lanes) gets it narrowed in place,
/// keeping what waits in it.
#[tokio::test]
async fn each_lane_binds_its_own_consumer_and_an_old_unfiltered_one_is_narrowed() {
    let nats = NatsServer::start();
    let bus = Bus::connect(&nats.url(), "test", Topology::default())
        .await
        .unwrap();
    bus.ensure_topology().await.unwrap();
    // The consumer as versions before lanes created it: the whole stream.
    bus.durable_consumer(names::INBOUND_STREAM, names::FORWARDER_CONSUMER, &[], 8)
        .await
        .unwrap();
    let waiting = bus
        .publish(
            &names::inbound_subject(wacenter_proto::Provider::Gowa, names::DEFAULT_LANE),
            "waiting-1",
            Default::default(),
            "{}".into(),
        )
        .await
        .unwrap();
    for lane in [names::DEFAULT_LANE, "jaya", "makmur"] {
        let (consumer, filters) = names::forwarder_lane(lane);
        bus.durable_consumer(names::INBOUND_STREAM, &consumer, &filters, 8)
            .await
            .unwrap_or_else(|e| panic!("lane {lane}: {e}"));
        let (consumer, filters) = names::reply_lane(lane);
        bus.durable_consumer(names::OUTBOUND_STREAM, &consumer, &filters, 8)
            .await
            .unwrap_or_else(|e| panic!("lane {lane}: {e}"));
    }
    assert_eq!(waiting.sequence, 1);
    assert_eq!(
        bus.consumer_lag(names::INBOUND_STREAM, names::FORWARDER_CONSUMER)
            .await
            .unwrap(),
        1,
        "the narrowed consumer still has the message that waited in it"
    );
    bus.publish(
        &names::inbound_subject(wacenter_proto::Provider::Meta, "jaya"),
        "jaya-1",
        Default::default(),
        "{}".into(),
    )
    .await
    .unwrap();
    assert_eq!(
        bus.consumer_lag(names::INBOUND_STREAM, "forwarder-jaya")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        bus.consumer_lag(names::INBOUND_STREAM, "forwarder-makmur")
            .await
            .unwrap(),
        0
    );
}
