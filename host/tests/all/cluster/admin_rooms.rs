//! The admin API's room endpoints across the cluster (issue 21, point 4): a room that
//! rendezvous hashing places on n3 is listed by n1's and n2's admin API (marked with its
//! node, once: the asking node does not load a copy) and inspected through n1's, with
//! the occupants of n1 and n2 that n3 holds; an unknown room on n3 is a 404 through n1,
//! as on n3 itself; the room's log is read through n1; bob is kicked and the room
//! destroyed through n1; a room created through n1 is made on n3, its host.

use super::{api, cluster, join_room, room_hosted_on, statuses, wait_room_nodes};
use crate::common::RawClient;

async fn get_json(server: &crate::common::TestServer, path: &str) -> (u16, serde_json::Value) {
    let (status, text) = api(server, "GET", path, "").await;
    (status, serde_json::from_str(&text).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_hosted_on_n3_is_listed_and_inspected_through_n1() {
    let Some(c) = cluster().await else {
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
    // Accept the default configuration (unlocks the room).
    alice
        .send_raw(&format!(
            "<iq type='set' id='cfg' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'/></query></iq>"
        ))
        .await;
    let r = alice.next_matching(|e| e.attr("id") == Some("cfg")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    join_room(&mut bob, &room, "bob").await;

    // Listed through every node, once, as n3's.
    for (i, server) in c.nodes.iter().enumerate() {
        let (status, v) = get_json(server, "/api/v1/tenants/default/rooms").await;
        assert_eq!(status, 200, "{v}");
        let listed: Vec<&serde_json::Value> = v["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["jid"] == room.as_str())
            .collect();
        assert_eq!(listed.len(), 1, "n{}: {v}", i + 1);
        assert_eq!(listed[0]["node"], "n3", "n{}: {v}", i + 1);
        assert_eq!(listed[0]["occupants"], 2, "n{}: {v}", i + 1);
        assert!(v.get("unreachable").is_none(), "{v}");
    }

    // Inspected through n1: n3's view, with both occupants.
    let path = format!("/api/v1/tenants/default/rooms/{room}");
    let (status, details) = get_json(&c.nodes[0], &path).await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["jid"], room.as_str());
    assert_eq!(details["node"], "n3");
    let mut nicks: Vec<&str> = details["occupants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["nick"].as_str())
        .collect();
    nicks.sort();
    assert_eq!(nicks, ["alice", "bob"], "{details}");
    assert_eq!(
        details["affiliations"]["alice@localhost"], "owner",
        "{details}"
    );
    // The same as n3 answers itself.
    let (_, on_n3) = get_json(&c.nodes[2], &path).await;
    assert_eq!(on_n3, details);

    // n1 did not load a copy of the room: it still lists it once, as n3's.
    let (_, v) = get_json(&c.nodes[0], "/api/v1/tenants/default/rooms").await;
    let copies = v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["jid"] == room.as_str())
        .count();
    assert_eq!(copies, 1, "{v}");

    // A room n3 would host but that does not exist: 404 through n1, as through n3.
    let missing = (0..)
        .map(|i| format!("nothere{i}@conference.localhost"))
        .find(|r| heliograph_cluster::placement::owner_of(["n1", "n2", "n3"], r) == Some("n3"))
        .unwrap();
    let missing_path = format!("/api/v1/tenants/default/rooms/{missing}");
    let (status, v) = get_json(&c.nodes[0], &missing_path).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"], "room_not_found", "{v}");
    let (status, _) = get_json(&c.nodes[2], &missing_path).await;
    assert_eq!(status, 404);

    // The room's log through n1 (answered by n3: the room is not logged).
    let (status, log) = get_json(&c.nodes[0], &format!("{path}/log")).await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["room"], room.as_str(), "{log}");
    assert_eq!(log["logging"], false, "{log}");

    // Kicked through n1: n3 kicks bob (n2), who gets the 307.
    let (status, text) = api(
        &c.nodes[0],
        "POST",
        &format!("{path}/kick"),
        r#"{"nick":"bob","reason":"through n1"}"#,
    )
    .await;
    assert_eq!(status, 204, "{text}");
    let kicked = bob
        .next_matching(|e| {
            e.name() == "presence"
                && e.attr("type") == Some("unavailable")
                && statuses(e).contains(&"307".to_string())
        })
        .await;
    assert!(kicked.to_string().contains("through n1"), "{kicked}");
    let (_, details) = get_json(&c.nodes[0], &path).await;
    assert_eq!(
        details["occupants"].as_array().unwrap().len(),
        1,
        "{details}"
    );

    // Destroyed through n1: alice (n1) gets the <destroy/> presence, and no node lists
    // the room any more.
    let (status, text) = api(&c.nodes[0], "DELETE", &format!("{path}?reason=done"), "").await;
    assert_eq!(status, 204, "{text}");
    let self_jid = format!("{room}/alice");
    let gone = alice
        .next_matching(move |e| {
            e.name() == "presence"
                && e.attr("type") == Some("unavailable")
                && e.attr("from") == Some(self_jid.as_str())
        })
        .await;
    assert!(gone.to_string().contains("destroy"), "{gone}");
    for server in &c.nodes {
        let (_, v) = get_json(server, "/api/v1/tenants/default/rooms").await;
        assert!(
            v["rooms"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["jid"] != room.as_str()),
            "{v}"
        );
    }

    // Created through n1, a room that n3 hosts: made on n3 (listed as n3's everywhere),
    // and a second creation is a conflict, as on one node.
    let planned = (0..)
        .map(|i| format!("planned{i}@conference.localhost"))
        .find(|r| heliograph_cluster::placement::owner_of(["n1", "n2", "n3"], r) == Some("n3"))
        .unwrap();
    let body = format!(
        r#"{{"jid":"{planned}","config":{{"roomname":"Planning"}},"owners":["alice@localhost"]}}"#
    );
    let (status, text) = api(&c.nodes[0], "POST", "/api/v1/tenants/default/rooms", &body).await;
    assert_eq!(status, 201, "{text}");
    for server in &c.nodes {
        let (_, v) = get_json(server, "/api/v1/tenants/default/rooms").await;
        let listed: Vec<&serde_json::Value> = v["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["jid"] == planned.as_str())
            .collect();
        assert_eq!(listed.len(), 1, "{v}");
        assert_eq!(listed[0]["node"], "n3", "{v}");
        assert_eq!(listed[0]["name"], "Planning", "{v}");
    }
    let (status, text) = api(&c.nodes[1], "POST", "/api/v1/tenants/default/rooms", &body).await;
    assert_eq!(status, 409, "{text}");
}
