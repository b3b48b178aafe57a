//! A persistent room's discussion history survives the death of the node hosting it: the
//! node that takes the room over reads the history back from the room's archive.

use super::*;

/// Alice (n1) and bob (n2) talk in a persistent room hosted on n3; n3 is killed. Both
/// rejoin (332), the room comes back on n1 or n2, and each rejoin gets the messages said
/// before the failover as history (with a delay stamp). Before the history was read
/// back, it died with n3 and the rejoins got none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_history_comes_back_with_the_room_on_another_node() {
    let Some(mut c) = cluster().await else {
        return;
    };
    wait_room_nodes(&c.nodes.iter().collect::<Vec<_>>(), &["n1", "n2", "n3"]).await;
    let room = room_hosted_on(&["n1", "n2", "n3"], "n3");
    let (mut alice, _) = RawClient::login(&c.nodes[0].starttls, "alice", "pw-a", Some("a")).await;
    let (mut bob, _) = RawClient::login(&c.nodes[1].starttls, "bob", "pw-b", Some("b")).await;
    for cl in [&mut alice, &mut bob] {
        cl.send_raw("<presence/>").await;
    }
    join_room(&mut alice, &room, "alice").await;
    make_persistent(&mut alice, &room).await;
    join_room(&mut bob, &room, "bob").await;
    let said = ["first from alice", "then bob", "and alice again"];
    for (i, body) in said.iter().enumerate() {
        let sender = if i % 2 == 0 { &mut alice } else { &mut bob };
        sender.send(&groupchat(&room, body)).await;
        expect_body(&mut alice, body).await;
        expect_body(&mut bob, body).await;
    }
    // The room archives a message after broadcasting it, under the room's lock: once a
    // later message is broadcast, the ones before are archived.
    alice.send(&groupchat(&room, "barrier")).await;
    expect_body(&mut alice, "barrier").await;
    assert_eq!(rooms_on(&c.nodes[2], "n3").await, vec![room.clone()]);

    c.nodes[2].kill();
    for (cl, nick) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let from = format!("{room}/{nick}");
        let gone = cl
            .next_matching(move |e| {
                e.name() == "presence"
                    && e.attr("type") == Some("unavailable")
                    && e.attr("from") == Some(from.as_str())
            })
            .await;
        assert!(statuses(&gone).contains(&"332".to_string()), "{gone}");
    }
    wait_room_nodes(&[&c.nodes[0], &c.nodes[1]], &["n1", "n2"]).await;
    for (cl, nick) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        join_room(cl, &room, nick).await;
        for body in said {
            let m = expect_body(cl, body).await;
            assert!(
                m.child("delay", "urn:xmpp:delay").is_some(),
                "not history: {m}"
            );
        }
    }
}
