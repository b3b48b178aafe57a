//! [`MucStore`] on PostgreSQL: `muc_rooms` (a domain's rooms by name) and `muc_log`
//! (numbered lines per room). An append takes a transaction-scoped advisory lock on the
//! room, numbers its lines after the last one and trims the oldest beyond `keep`.

use heliograph_storage::{MucStore, RoomLogEntry, StorageResult, StoredRoom, key_part};

use super::{PgStore, json, parse, to_i64, to_u64};

fn room_key(domain: &str, name: &str) -> StorageResult<(String, String)> {
    Ok((
        key_part(domain, "domain")?.to_string(),
        key_part(name, "room name")?.to_string(),
    ))
}

impl MucStore for PgStore {
    fn rooms(&self, domain: &str) -> StorageResult<Vec<StoredRoom>> {
        let d = key_part(domain, "domain")?.to_string();
        self.call("loading rooms", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT name, room::text FROM muc_rooms WHERE domain = $1 ORDER BY name",
                )
                .await?;
            c.query(&st, &[&d])
                .await?
                .iter()
                .map(|r| parse(r.get(1), &format!("room {}@{d}", r.get::<_, &str>(0))))
                .collect()
        })
    }

    fn put_room(&self, domain: &str, room: &StoredRoom) -> StorageResult<()> {
        let (d, n) = room_key(domain, &room.name)?;
        let value = json(room)?;
        self.call("storing a room", move |c| async move {
            let st = c
                .prepare_cached(
                    "INSERT INTO muc_rooms (domain, name, room) \
                     VALUES ($1, $2, CAST($3::text AS jsonb)) \
                     ON CONFLICT (domain, name) DO UPDATE SET room = EXCLUDED.room",
                )
                .await?;
            c.execute(&st, &[&d, &n, &value]).await?;
            Ok(())
        })
    }

    fn delete_room(&self, domain: &str, name: &str) -> StorageResult<()> {
        let (d, n) = room_key(domain, name)?;
        self.call("deleting a room", move |c| async move {
            let st = c
                .prepare_cached("DELETE FROM muc_rooms WHERE domain = $1 AND name = $2")
                .await?;
            c.execute(&st, &[&d, &n]).await?;
            Ok(())
        })
    }

    fn append_log(
        &self,
        domain: &str,
        name: &str,
        entries: &[RoomLogEntry],
        keep: usize,
    ) -> StorageResult<()> {
        let (d, n) = room_key(domain, name)?;
        let lines = entries
            .iter()
            .map(json)
            .collect::<StorageResult<Vec<_>>>()?;
        let keep = to_i64(keep as u64);
        self.call("appending to a room log", move |mut c| async move {
            let tx = c.transaction().await?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))",
                &[&d, &n],
            )
            .await?;
            let last: i64 = tx
                .query_one(
                    "SELECT coalesce(max(number), 0) FROM muc_log WHERE domain = $1 AND room = $2",
                    &[&d, &n],
                )
                .await?
                .get(0);
            let st = tx
                .prepare_cached(
                    "INSERT INTO muc_log (domain, room, number, entry) \
                     VALUES ($1, $2, $3, CAST($4::text AS jsonb))",
                )
                .await?;
            let mut number = last;
            for line in &lines {
                number += 1;
                tx.execute(&st, &[&d, &n, &number, line]).await?;
            }
            tx.execute(
                "DELETE FROM muc_log WHERE domain = $1 AND room = $2 AND number <= $3",
                &[&d, &n, &(number - keep)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn room_log(
        &self,
        domain: &str,
        name: &str,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<(u64, RoomLogEntry)>> {
        let (d, n) = room_key(domain, name)?;
        let (after, limit) = (to_i64(after), to_i64(limit as u64));
        self.call("reading a room log", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT number, entry::text FROM muc_log \
                     WHERE domain = $1 AND room = $2 AND number > $3 \
                     ORDER BY number LIMIT $4",
                )
                .await?;
            c.query(&st, &[&d, &n, &after, &limit])
                .await?
                .iter()
                .map(|r| {
                    let number: i64 = r.get(0);
                    Ok((to_u64(number), parse(r.get(1), &format!("log of {n}@{d}"))?))
                })
                .collect()
        })
    }

    fn delete_log(&self, domain: &str, name: &str) -> StorageResult<()> {
        let (d, n) = room_key(domain, name)?;
        self.call("deleting a room log", move |c| async move {
            let st = c
                .prepare_cached("DELETE FROM muc_log WHERE domain = $1 AND room = $2")
                .await?;
            c.execute(&st, &[&d, &n]).await?;
            Ok(())
        })
    }
}
