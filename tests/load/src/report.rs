//! The `report --out` document: every figure of a report run under one stable name, with
//! its unit, which direction is better and the target where one is set, plus the raw
//! measurements. `tests/load/compare.sh` reads two sets of these documents (two
//! binaries, same run) and prints each figure's ratio, so a regression shows as a number.

use serde_json::{Map, Value, json};

/// The measurements a report run took (each one of the measurement JSON values).
pub struct Figures<'a> {
    pub mem_plain: &'a Value,
    pub mem_tls: &'a Value,
    pub login_plain: &'a Value,
    pub scram: &'a Value,
    /// Absent when the server was not started by the load generator.
    pub jwt: Option<&'a Value>,
    pub chat_max: &'a Value,
    pub relay_max: &'a Value,
    pub relay_ratio: &'a Value,
    /// Highest paced rate the server kept up with, messages per second.
    pub sustained_rate: f64,
    pub chat_half: &'a Value,
    pub relay_half: &'a Value,
    pub muc: &'a Value,
}

/// Which way a figure improves.
#[derive(Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

/// One named figure.
struct Figure {
    name: &'static str,
    unit: &'static str,
    better: Better,
    /// The performance issue's target, if it sets one.
    target: Option<f64>,
    value: Option<f64>,
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The login rate of the first or last segment of a connect measurement.
fn segment_rate(v: &Value, last: bool) -> Option<f64> {
    let segs = v.get("segments")?.as_array()?;
    let seg = if last { segs.last() } else { segs.first() }?;
    num(seg, "logins_per_s")
}

fn figures(f: &Figures<'_>) -> Vec<Figure> {
    use Better::{Higher, Lower};
    let fig = |name, unit, better, target, value| Figure {
        name,
        unit,
        better,
        target,
        value,
    };
    let lost = [f.chat_max, f.relay_max, f.chat_half, f.relay_half, f.muc]
        .iter()
        .map(|v| num(v, "lost").unwrap_or(0.0))
        .sum::<f64>();
    let jwt = |key| f.jwt.and_then(|v| num(v, key));
    vec![
        fig(
            "idle_session_plain_kib",
            "KiB",
            Lower,
            Some(6.0),
            num(f.mem_plain, "kib_per_session"),
        ),
        fig(
            "idle_session_tls_kib",
            "KiB",
            Lower,
            Some(10.0),
            num(f.mem_tls, "kib_per_session"),
        ),
        fig(
            "plain_login_cpu_ms",
            "ms",
            Lower,
            None,
            num(f.login_plain, "server_cpu_ms_per_login"),
        ),
        fig(
            "plain_login_rate",
            "logins/s",
            Higher,
            None,
            num(f.login_plain, "logins_per_s"),
        ),
        fig(
            "plain_login_p99_ms",
            "ms",
            Lower,
            None,
            num(f.login_plain, "login_p99_ms"),
        ),
        fig(
            "plain_login_rate_first_segment",
            "logins/s",
            Higher,
            None,
            segment_rate(f.login_plain, false),
        ),
        fig(
            "plain_login_rate_last_segment",
            "logins/s",
            Higher,
            None,
            segment_rate(f.login_plain, true),
        ),
        fig(
            "scram_login_cpu_ms",
            "ms",
            Lower,
            None,
            num(f.scram, "server_cpu_ms_per_login"),
        ),
        fig(
            "scram_login_rate",
            "logins/s",
            Higher,
            None,
            num(f.scram, "logins_per_s"),
        ),
        fig(
            "scram_login_p99_ms",
            "ms",
            Lower,
            None,
            num(f.scram, "login_p99_ms"),
        ),
        fig(
            "jwt_login_cpu_ms",
            "ms",
            Lower,
            Some(0.15),
            jwt("server_cpu_ms_per_login"),
        ),
        fig(
            "jwt_login_rate",
            "logins/s",
            Higher,
            None,
            jwt("logins_per_s"),
        ),
        fig("jwt_login_p99_ms", "ms", Lower, None, jwt("login_p99_ms")),
        fig(
            "chat_cpu_us_per_msg",
            "µs",
            Lower,
            Some(2.5),
            num(f.chat_max, "cpu_us_per_msg"),
        ),
        fig(
            "chat_rate",
            "msg/s",
            Higher,
            None,
            num(f.chat_max, "delivered_per_s"),
        ),
        fig(
            "chat_vs_relay_rate",
            "ratio",
            Higher,
            Some(0.5),
            num(f.relay_ratio, "rate_ratio"),
        ),
        fig(
            "chat_sustained_paced_rate",
            "msg/s",
            Higher,
            None,
            Some(f.sustained_rate),
        ),
        fig(
            "chat_half_rate_cpu_us_per_msg",
            "µs",
            Lower,
            None,
            num(f.chat_half, "cpu_us_per_msg"),
        ),
        fig(
            "chat_half_rate_p99_ms",
            "ms",
            Lower,
            None,
            num(f.chat_half, "p99_ms"),
        ),
        fig(
            "muc_cpu_us_per_delivery",
            "µs",
            Lower,
            Some(2.5),
            num(f.muc, "cpu_us_per_delivery"),
        ),
        fig(
            "muc_deliveries_per_s",
            "deliveries/s",
            Higher,
            None,
            num(f.muc, "deliveries_per_s"),
        ),
        fig(
            "muc_join_cpu_ms",
            "ms",
            Lower,
            None,
            num(f.muc, "cpu_ms_per_join"),
        ),
        fig("lost_messages", "messages", Lower, Some(0.0), Some(lost)),
    ]
}

/// The document: `figures` maps each name to `{value, unit, better, target}` (value null
/// when not measured), `measurements` holds every measurement of the run in order.
pub fn document(f: &Figures<'_>, measurements: Vec<Value>) -> Value {
    let mut map = Map::new();
    for fig in figures(f) {
        map.insert(
            fig.name.into(),
            json!({
                "value": fig.value,
                "unit": fig.unit,
                "better": match fig.better { Better::Lower => "lower", Better::Higher => "higher" },
                "target": fig.target,
            }),
        );
    }
    json!({
        "generator": concat!("heliograph-load ", env!("CARGO_PKG_VERSION")),
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "figures": Value::Object(map),
        "measurements": measurements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_figure_is_named_once_and_taken_from_its_measurement() {
        let mem = json!({"kib_per_session": 5.5});
        let login = json!({"server_cpu_ms_per_login": 0.2, "logins_per_s": 900.0,
            "login_p99_ms": 40.0, "segments": [{"logins_per_s": 1000.0}, {"logins_per_s": 800.0}]});
        let chat =
            json!({"cpu_us_per_msg": 3.0, "delivered_per_s": 100.0, "lost": 2, "p99_ms": 1.0});
        let muc = json!({"cpu_us_per_delivery": 1.5, "lost": 1});
        let ratio = json!({"rate_ratio": 0.4});
        let f = Figures {
            mem_plain: &mem,
            mem_tls: &mem,
            login_plain: &login,
            scram: &login,
            jwt: None,
            chat_max: &chat,
            relay_max: &chat,
            relay_ratio: &ratio,
            sustained_rate: 80_000.0,
            chat_half: &chat,
            relay_half: &chat,
            muc: &muc,
        };
        let doc = document(&f, vec![json!({"measurement": "chat"})]);
        let figs = doc["figures"].as_object().unwrap();
        assert_eq!(figs.len(), figures(&f).len(), "names are unique");
        assert_eq!(figs["idle_session_plain_kib"]["value"], 5.5);
        assert_eq!(figs["idle_session_plain_kib"]["target"], 6.0);
        assert_eq!(figs["plain_login_rate_first_segment"]["value"], 1000.0);
        assert_eq!(figs["plain_login_rate_last_segment"]["value"], 800.0);
        assert_eq!(figs["chat_vs_relay_rate"]["better"], "higher");
        assert!(figs["jwt_login_cpu_ms"]["value"].is_null());
        // 2 + 2 + 2 + 2 from the chats, 1 from the room.
        assert_eq!(figs["lost_messages"]["value"], 9.0);
        assert_eq!(doc["measurements"].as_array().unwrap().len(), 1);
    }
}
