//! Human-readable output of the client commands.

use std::io::{self, Write};

use super::client::Session;

/// One name per line.
pub fn write_lines(out: &mut dyn Write, names: &[String]) -> io::Result<()> {
    for n in names {
        writeln!(out, "{n}")?;
    }
    Ok(())
}

/// Sessions as an aligned table with a header.
pub fn write_sessions(out: &mut dyn Write, sessions: &[Session]) -> io::Result<()> {
    let header = [
        "JID",
        "TRANSPORT",
        "ADDRESS",
        "PRIORITY",
        "AVAILABLE",
        "SINCE (UTC)",
    ];
    let rows: Vec<[String; 6]> = sessions
        .iter()
        .map(|s| {
            [
                s.jid.clone(),
                s.transport.clone(),
                s.address.clone(),
                s.priority.to_string(),
                if s.available { "yes" } else { "no" }.to_string(),
                format_utc(s.since),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s
    };
    writeln!(out, "{}", line(&header))?;
    for row in &rows {
        writeln!(out, "{}", line(&row.each_ref().map(String::as_str)))?;
    }
    if rows.is_empty() {
        writeln!(out, "(no sessions)")?;
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` for seconds since the Unix epoch, in UTC.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn session_table() {
        let s = Session {
            jid: "alice@example.com/phone".into(),
            transport: "tls".into(),
            address: "127.0.0.1:5000".into(),
            priority: 5,
            available: true,
            since: 0,
        };
        let mut out = Vec::new();
        write_sessions(&mut out, &[s]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("JID                      TRANSPORT"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("alice@example.com/phone  tls"),
            "{text}"
        );
        assert!(lines[1].ends_with("1970-01-01 00:00:00"), "{text}");
    }
}
