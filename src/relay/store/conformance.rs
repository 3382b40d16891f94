//! The conformance suite every [`Store`] engine must pass.

use super::*;

/// Stores `acked` (flushed: acknowledged) and then `unflushed` (written and indexed, a read
/// committing its index), makes flushes fail with `fail_flushes`, and returns the error of
/// `unflushed`'s flush: what a failing disk leaves behind.
pub(crate) fn ack_one_then_fail_the_flush_of_another(
    s: &dyn Store,
    acked: &NewPacket,
    unflushed: &NewPacket,
    fail_flushes: impl FnOnce(),
) -> StoreError {
    s.put_batch(std::slice::from_ref(acked), LIMITS, 0).unwrap();
    let (_, ticket) = s
        .put_batch_deferred(std::slice::from_ref(unflushed), LIMITS, 0, &mut |_| {})
        .unwrap();
    assert_eq!(s.stats().unwrap().packets, 2);
    fail_flushes();
    s.sync(ticket).unwrap_err()
}

/// Limits generous enough not to interfere unless a test means them to.
pub(crate) const LIMITS: PutLimits = PutLimits {
    max_inbox_packets: 1_000,
    max_stored_bytes: 1 << 30,
};

/// A synthetic packet `n` for recipient `r` (the store does not validate JSON).
pub(crate) fn packet(n: u32, r: u8, expires_at: UnixMillis) -> NewPacket {
    let json = format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(100)).into_bytes();
    NewPacket {
        hash: PacketHash::of_message(&format!("message {n}")),
        recipient: Fingerprint([r; 32]),
        expires_at,
        json,
    }
}

/// `get_many`, collected.
pub(crate) fn get_many(
    s: &dyn Store,
    hashes: &[PacketHash],
    max_bytes: u64,
    now: UnixMillis,
) -> Vec<StoredPacket> {
    let mut out = Vec::new();
    s.get_many(hashes, max_bytes, now, &mut |p| out.push(p.to_owned()))
        .unwrap();
    out
}

/// An inbox read, collected.
pub(crate) struct Page {
    pub(crate) packets: Vec<StoredPacket>,
    pub(crate) cursor: u64,
    pub(crate) more: bool,
}

/// `inbox`, collected.
pub(crate) fn inbox(
    s: &dyn Store,
    recipient: &Fingerprint,
    after: u64,
    max_bytes: u64,
    now: UnixMillis,
) -> Page {
    let mut packets = Vec::new();
    let end = s
        .inbox(recipient, after, max_bytes, now, &mut |p| {
            packets.push(p.to_owned())
        })
        .unwrap();
    Page {
        packets,
        cursor: end.cursor,
        more: end.more,
    }
}

/// Runs every check against fresh stores from `make` (the second value is kept alive, e.g. a
/// temporary directory).
pub(crate) fn run_all<S: Store, G>(make: impl Fn() -> (S, G)) {
    type Check = fn(&dyn Store);
    let checks: &[(&str, Check)] = &[
        ("put_then_get", put_then_get),
        ("duplicates_are_idempotent", duplicates_are_idempotent),
        (
            "inbox_pages_in_order_with_cursor",
            inbox_pages_in_order_with_cursor,
        ),
        (
            "pages_fill_the_byte_limit_and_pass_expired_packets",
            pages_fill_the_byte_limit_and_pass_expired_packets,
        ),
        ("get_many_skips_unknown", get_many_skips_unknown),
        (
            "expired_packets_are_invisible",
            expired_packets_are_invisible,
        ),
        (
            "sweep_leaves_tombstones_then_forgets",
            sweep_leaves_tombstones_then_forgets,
        ),
        ("sweep_is_bounded", sweep_is_bounded),
        ("limits_are_enforced", limits_are_enforced),
        ("for_each_hash_lists_live", for_each_hash_lists_live),
        (
            "servers_are_bounded_and_unique",
            servers_are_bounded_and_unique,
        ),
    ];
    for (name, check) in checks {
        let (store, _guard) = make();
        eprintln!("conformance: {name}");
        check(&store);
    }
    eprintln!("conformance: instances_differ");
    let (one, _one) = make();
    let (other, _other) = make();
    assert_ne!(
        one.instance(),
        other.instance(),
        "each store's contents get their own instance id"
    );
}

fn put_then_get(s: &dyn Store) {
    let a = packet(1, 1, 1_000);
    let b = packet(2, 2, 1_000);
    let out = s.put_batch(&[a.clone(), b.clone()], LIMITS, 0).unwrap();
    assert_eq!(
        out,
        vec![PutOutcome::Stored { seq: 1 }, PutOutcome::Stored { seq: 2 }]
    );
    let got = get_many(s, &[b.hash, a.hash], u64::MAX, 0);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].json, b.json);
    assert_eq!(got[1].json, a.json);
    assert_eq!(got[1].expires_at, 1_000);
    assert!(s.contains(&a.hash, 0).unwrap());
    let stats = s.stats().unwrap();
    assert_eq!(stats.packets, 2);
    assert_eq!(stats.bytes, (a.json.len() + b.json.len()) as u64);
}

fn duplicates_are_idempotent(s: &dyn Store) {
    let a = packet(1, 1, 1_000);
    let out = s.put_batch(&[a.clone(), a.clone()], LIMITS, 0).unwrap();
    assert_eq!(
        out,
        vec![PutOutcome::Stored { seq: 1 }, PutOutcome::Duplicate]
    );
    let out = s.put_batch(std::slice::from_ref(&a), LIMITS, 0).unwrap();
    assert_eq!(out, vec![PutOutcome::Duplicate]);
    assert_eq!(s.stats().unwrap().packets, 1);
    assert_eq!(inbox(s, &a.recipient, 0, u64::MAX, 0).packets.len(), 1);
}

fn inbox_pages_in_order_with_cursor(s: &dyn Store) {
    let mine: Vec<_> = (0..10).map(|n| packet(n, 7, 1_000)).collect();
    let other = packet(100, 8, 1_000);
    s.put_batch(&mine[..5], LIMITS, 0).unwrap();
    s.put_batch(std::slice::from_ref(&other), LIMITS, 0)
        .unwrap();
    s.put_batch(&mine[5..], LIMITS, 0).unwrap();

    let all = inbox(s, &Fingerprint([7; 32]), 0, u64::MAX, 0);
    let hashes: Vec<_> = all.packets.iter().map(|p| p.hash).collect();
    assert_eq!(hashes, mine.iter().map(|p| p.hash).collect::<Vec<_>>());
    assert!(!all.more);

    // A cursor from the middle returns only what came after it.
    let first = inbox(s, &Fingerprint([7; 32]), 0, 1, 0);
    assert_eq!(first.packets.len(), 1, "max_bytes still returns one packet");
    assert!(first.more);
    let rest = inbox(s, &Fingerprint([7; 32]), first.cursor, u64::MAX, 0);
    assert_eq!(rest.packets.len(), 9);
    assert_eq!(rest.packets[0].hash, mine[1].hash);

    // Nothing new: the cursor stays and the page is empty.
    let none = inbox(s, &Fingerprint([7; 32]), all.cursor, u64::MAX, 0);
    assert!(none.packets.is_empty());
    assert_eq!(none.cursor, all.cursor);
    let new = packet(50, 7, 1_000);
    s.put_batch(std::slice::from_ref(&new), LIMITS, 0).unwrap();
    let after = inbox(s, &Fingerprint([7; 32]), all.cursor, u64::MAX, 0);
    assert_eq!(after.packets.len(), 1);
    assert_eq!(after.packets[0].hash, new.hash);
}

fn pages_fill_the_byte_limit_and_pass_expired_packets(s: &dyn Store) {
    // Every third packet expires at 100; the rest live on. All have the same size.
    let all: Vec<_> = (10..22)
        .map(|n| packet(n, 9, if n % 3 == 1 { 100 } else { 1_000 }))
        .collect();
    for chunk in all.chunks(5) {
        s.put_batch(chunk, LIMITS, 0).unwrap();
    }
    let size = all[0].json.len() as u64;
    let live: Vec<_> = all
        .iter()
        .filter(|p| p.expires_at > 100)
        .map(|p| p.hash)
        .collect();

    // Pages of three packets' worth of bytes (or a byte less: then two) at time 100.
    for (limit, per_page) in [(3 * size, 3), (3 * size - 1, 2)] {
        let (mut seen, mut cursor, mut pages) = (Vec::new(), 0, 0);
        loop {
            let page = inbox(s, &Fingerprint([9; 32]), cursor, limit, 100);
            pages += 1;
            assert!(page.packets.len() <= per_page);
            if page.more {
                assert_eq!(page.packets.len(), per_page, "a full page at limit {limit}");
            }
            seen.extend(page.packets.iter().map(|p| p.hash));
            cursor = page.cursor;
            if !page.more {
                break;
            }
        }
        assert_eq!(
            seen, live,
            "every live packet once, in order, at limit {limit}"
        );
        assert_eq!(pages, live.len().div_ceil(per_page));
        let past = inbox(s, &Fingerprint([9; 32]), cursor, limit, 100);
        assert!(past.packets.is_empty() && !past.more);
    }

    // By hash: the same budget, expired ones passed over, the order asked for.
    let asked: Vec<_> = all.iter().rev().map(|p| p.hash).collect();
    let got = get_many(s, &asked, 2 * size, 100);
    let want: Vec<_> = live.iter().rev().take(2).copied().collect();
    assert_eq!(got.iter().map(|p| p.hash).collect::<Vec<_>>(), want);
}

fn get_many_skips_unknown(s: &dyn Store) {
    let a = packet(1, 1, 1_000);
    let b = packet(2, 1, 1_000);
    s.put_batch(&[a.clone(), b.clone()], LIMITS, 0).unwrap();
    let unknown = PacketHash([9; 32]);
    let got = get_many(s, &[unknown, a.hash, b.hash], u64::MAX, 0);
    assert_eq!(
        got.iter().map(|p| p.hash).collect::<Vec<_>>(),
        vec![a.hash, b.hash]
    );
    let capped = get_many(s, &[a.hash, b.hash], 1, 0);
    assert_eq!(capped.len(), 1);
    assert!(!s.contains(&unknown, 0).unwrap());
}

fn expired_packets_are_invisible(s: &dyn Store) {
    let a = packet(1, 1, 100);
    s.put_batch(std::slice::from_ref(&a), LIMITS, 0).unwrap();
    assert!(s.contains(&a.hash, 99).unwrap());
    assert!(!s.contains(&a.hash, 100).unwrap());
    assert!(get_many(s, &[a.hash], u64::MAX, 100).is_empty());
    assert!(inbox(s, &a.recipient, 0, u64::MAX, 100).packets.is_empty());
    // Expired but not yet swept: still refused.
    assert!(s.tombstoned(&a.hash, 150).unwrap());
    assert_eq!(
        s.put_batch(std::slice::from_ref(&a), LIMITS, 150).unwrap(),
        vec![PutOutcome::Tombstoned]
    );
    // Arriving already expired: refused.
    let late = packet(2, 1, 10);
    assert_eq!(
        s.put_batch(&[late], LIMITS, 50).unwrap(),
        vec![PutOutcome::Tombstoned]
    );
}

fn sweep_leaves_tombstones_then_forgets(s: &dyn Store) {
    let a = packet(1, 1, 100);
    let b = packet(2, 1, 10_000);
    s.put_batch(&[a.clone(), b.clone()], LIMITS, 0).unwrap();
    let report = s.sweep(200, 1_000, 100).unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(s.stats().unwrap().packets, 1);
    assert_eq!(s.stats().unwrap().bytes, b.json.len() as u64);
    let inbox = inbox(s, &a.recipient, 0, u64::MAX, 200);
    assert_eq!(inbox.packets.len(), 1);
    assert!(s.tombstoned(&a.hash, 500).unwrap());
    assert!(!s.tombstoned(&b.hash, 500).unwrap());
    // Within the horizon (expiry 100 + 1000) the hash is refused...
    assert_eq!(
        s.put_batch(std::slice::from_ref(&a), LIMITS, 500).unwrap(),
        vec![PutOutcome::Tombstoned]
    );
    // ...and once the horizon passes, the tombstone is forgotten.
    let report = s.sweep(1_100, 1_000, 100).unwrap();
    assert_eq!(report.tombstones_forgotten, 1);
    let fresh = NewPacket {
        expires_at: 5_000,
        ..a.clone()
    };
    assert!(matches!(
        s.put_batch(&[fresh], LIMITS, 1_200).unwrap()[0],
        PutOutcome::Stored { .. }
    ));
    // Nothing to do: an empty report.
    assert_eq!(s.sweep(1_200, 1_000, 100).unwrap(), SweepReport::default());
}

fn sweep_is_bounded(s: &dyn Store) {
    let many: Vec<_> = (0..25).map(|n| packet(n, (n % 3) as u8, 100)).collect();
    s.put_batch(&many, LIMITS, 0).unwrap();
    assert_eq!(s.sweep(200, 0, 10).unwrap().expired, 10);
    assert_eq!(s.sweep(200, 0, 10).unwrap().expired, 10);
    assert_eq!(s.sweep(200, 0, 10).unwrap().expired, 5);
    assert_eq!(s.stats().unwrap(), StoreStats::default());
    // A zero horizon leaves no tombstones.
    assert!(matches!(
        s.put_batch(
            &[NewPacket {
                expires_at: 1_000,
                ..many[0].clone()
            }],
            LIMITS,
            300
        )
        .unwrap()[0],
        PutOutcome::Stored { .. }
    ));
}

fn limits_are_enforced(s: &dyn Store) {
    let limits = PutLimits {
        max_inbox_packets: 2,
        max_stored_bytes: 1 << 20,
    };
    let out = s
        .put_batch(
            &[
                packet(1, 1, 100),
                packet(2, 1, 100),
                packet(3, 1, 100),
                packet(4, 2, 100),
            ],
            limits,
            0,
        )
        .unwrap();
    assert!(matches!(out[0], PutOutcome::Stored { .. }));
    assert!(matches!(out[1], PutOutcome::Stored { .. }));
    assert_eq!(out[2], PutOutcome::InboxFull);
    assert!(matches!(out[3], PutOutcome::Stored { .. }));
    // Expiry frees the inbox.
    s.sweep(100, 0, 100).unwrap();
    assert!(matches!(
        s.put_batch(&[packet(3, 1, 1_000)], limits, 150).unwrap()[0],
        PutOutcome::Stored { .. }
    ));

    let tight = PutLimits {
        max_inbox_packets: 100,
        max_stored_bytes: s.stats().unwrap().bytes + 10,
    };
    assert_eq!(
        s.put_batch(&[packet(9, 3, 1_000)], tight, 150).unwrap(),
        vec![PutOutcome::StoreFull]
    );
}

fn for_each_hash_lists_live(s: &dyn Store) {
    let live: Vec<_> = (0..5).map(|n| packet(n, 1, 1_000)).collect();
    s.put_batch(&live, LIMITS, 0).unwrap();
    s.put_batch(&[packet(99, 1, 10)], LIMITS, 0).unwrap();
    let mut seen = Vec::new();
    s.for_each_hash(50, &mut |h| {
        seen.push(h);
        true
    })
    .unwrap();
    let mut expected: Vec<_> = live.iter().map(|p| p.hash).collect();
    expected.sort();
    assert_eq!(seen, expected);
    let mut count = 0;
    s.for_each_hash(50, &mut |_| {
        count += 1;
        count < 2
    })
    .unwrap();
    assert_eq!(count, 2, "the visitor can stop early");
    // In (expiry, hash) order, live only.
    let mut by_expiry = Vec::new();
    s.for_each_by_expiry(50, &mut |e, h| {
        by_expiry.push((e, h));
        true
    })
    .unwrap();
    let mut expected: Vec<_> = live.iter().map(|p| (p.expires_at, p.hash)).collect();
    expected.sort();
    assert_eq!(by_expiry, expected);
}

fn servers_are_bounded_and_unique(s: &dyn Store) {
    let a: ServerEntry = "relay-a.example:8080".parse().unwrap();
    let b: ServerEntry = "[2001:db9::1]:80".parse().unwrap();
    let c: ServerEntry = "9.9.9.9:1".parse().unwrap();
    assert_eq!(
        s.add_servers(&[a.clone(), a.clone()], 2).unwrap(),
        vec![a.clone()]
    );
    assert_eq!(
        s.add_servers(&[a.clone(), b.clone(), c], 2).unwrap(),
        vec![b.clone()]
    );
    s.save_peer_record(&a, b"{\"score\":1}").unwrap();
    let records = s.peer_records().unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.contains(&(a.clone(), b"{\"score\":1}".to_vec())));
    assert!(records.contains(&(b.clone(), Vec::new())));
    let mut all = s.servers().unwrap();
    all.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(all, expected);
    // Forgetting one (with its record) makes room.
    let c: ServerEntry = "9.9.9.9:1".parse().unwrap();
    assert_eq!(s.remove_servers(&[a.clone(), c.clone()]).unwrap(), 1);
    assert_eq!(s.servers().unwrap(), vec![b.clone()]);
    assert_eq!(s.peer_records().unwrap(), vec![(b, Vec::new())]);
    assert_eq!(s.add_servers(std::slice::from_ref(&c), 2).unwrap(), vec![c]);
}
