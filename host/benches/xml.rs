//! XML stream parser throughput on realistic client traffic, and element serialization.
//!
//! `cargo bench -p heliograph --bench xml`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use heliograph::xml::{Element, ParserLimits, StreamEvent, StreamParser, ns};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

/// A mix of what a client sends once logged in: chat messages (some with chat states and
/// receipts), presence updates, roster and ping iqs, and a MUC-style groupchat message.
fn stanzas(count: usize) -> String {
    let mut s = String::new();
    for i in 0..count {
        match i % 8 {
            0..=2 => s.push_str(&format!(
                "<message to='juliet{}@example.com/balcony' type='chat' id='m{i}'>\
                 <body>Wherefore art thou, Romeo? message number {i} with some text &amp; an entity</body>\
                 <active xmlns='http://jabber.org/protocol/chatstates'/>\
                 <request xmlns='urn:xmpp:receipts'/></message>",
                i % 100
            )),
            3 => s.push_str(&format!(
                "<message to='romeo@example.com/orchard' type='chat' id='r{i}'>\
                 <received xmlns='urn:xmpp:receipts' id='m{}'/></message>",
                i - 1
            )),
            4 => s.push_str(
                "<presence><show>away</show><status>In a meeting</status><priority>5</priority>\
                 <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org' \
                 ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>",
            ),
            5 => s.push_str(&format!(
                "<iq type='get' id='ping{i}' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>"
            )),
            6 => s.push_str(&format!(
                "<iq type='set' id='roster{i}'><query xmlns='jabber:iq:roster'>\
                 <item jid='nurse{i}@example.com' name='Nurse'><group>Capulets</group></item>\
                 </query></iq>"
            )),
            _ => s.push_str(&format!(
                "<message to='room@conference.example.com' type='groupchat' id='g{i}'>\
                 <body>Hello room, this is a slightly longer groupchat message to everyone: {i}</body></message>"
            )),
        }
    }
    s
}

fn parse_all(input: &[u8], chunk: usize) -> usize {
    let mut p = StreamParser::new(ParserLimits::default());
    let mut n = 0;
    for c in input.chunks(chunk) {
        p.feed(c).unwrap();
        while let Some(ev) = p.next_event().unwrap() {
            if let StreamEvent::Stanza(el) = ev {
                black_box(&el);
                n += 1;
            }
        }
    }
    n
}

fn parser(c: &mut Criterion) {
    let body = stanzas(1000);
    let input = format!("{HEADER}{body}");
    let bytes = input.as_bytes();
    let mut g = c.benchmark_group("stream_parser");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    // 64: small writes from a mobile client; 1500: one segment; 4096: the server's read
    // buffer; 65536: a burst.
    for chunk in [64usize, 1500, 4096, 65536] {
        g.bench_with_input(
            BenchmarkId::new("mixed_1000_stanzas_chunk", chunk),
            &chunk,
            |b, &chunk| {
                b.iter(|| assert_eq!(parse_all(bytes, chunk), 1000));
            },
        );
    }
    g.finish();

    let mut g = c.benchmark_group("stream_parser_per_stanza");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("mixed_1000_stanzas_chunk_4096", |b| {
        b.iter(|| parse_all(bytes, 4096));
    });
    g.finish();
}

fn serialize(c: &mut Criterion) {
    let msg = Element::new("message", ns::CLIENT)
        .with_attr("from", "romeo@example.com/orchard")
        .with_attr("to", "juliet@example.com/balcony")
        .with_attr("type", "chat")
        .with_attr("id", "m12345")
        .with_child(
            Element::new("body", ns::CLIENT)
                .with_text("Wherefore art thou, Romeo? <with> & escapes"),
        )
        .with_child(Element::new(
            "active",
            "http://jabber.org/protocol/chatstates",
        ));
    let presence = Element::new("presence", ns::CLIENT)
        .with_attr("from", "romeo@example.com/orchard")
        .with_child(Element::new("show", ns::CLIENT).with_text("away"))
        .with_child(Element::new("status", ns::CLIENT).with_text("In a meeting"));
    let mut g = c.benchmark_group("serialize");
    let mut out = String::with_capacity(1024);
    for (name, el) in [("message", &msg), ("presence", &presence)] {
        g.throughput(Throughput::Bytes(el.to_string_in(ns::CLIENT).len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(el).write_to(&mut out, ns::CLIENT);
                black_box(out.len())
            })
        });
    }
    g.bench_function("message_clone", |b| b.iter(|| black_box(msg.clone())));
    g.finish();
}

criterion_group!(benches, parser, serialize);
criterion_main!(benches);
