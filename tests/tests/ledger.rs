//! The budget ledger against a real store, with a clock the test moves: reservations, settling,
//! every reset period, and leases that expire when their holder disappears.
//! Runs on SQLite and, when `SWITCHYARD_TEST_POSTGRES_URL` is set, on Postgres.

use std::sync::Arc;
use std::time::Duration;

use switchyard::access::limits::{Denied, LedgerSettings, Limiter, Subject};
use switchyard::clock::{parse_time, ManualClock};
use switchyard::money::pricing::Nanos;
use switchyard::records::limits::{Budget, Limits, Period};
use switchyard::store::Store;
use switchyard_tests::test_databases;

const DOLLAR: i64 = 1_000_000_000;

fn limits(period: Period) -> Limits {
    Limits {
        budget: Some(Budget {
            limit: Nanos(DOLLAR),
            period,
            soft_pct: 80,
        }),
        ..Limits::default()
    }
}

async fn spend(limiter: &Arc<Limiter>, l: &Limits, cost: i64) -> Result<(), Denied> {
    let subject = [Subject {
        scope: "key:k1",
        limits: l,
    }];
    let a = limiter.admit(&subject, 0, Nanos(cost)).await?;
    a.settlement
        .expect("a budget yields a settlement")
        .settle(Nanos(cost), 0);
    Ok(())
}

#[tokio::test]
async fn every_period_resets_at_its_boundary() {
    for (backend, url) in test_databases().await {
        let store = Store::connect(&url, 4).await.unwrap();
        for period in [Period::Daily, Period::Weekly, Period::Monthly, Period::Total] {
            // A Wednesday, late in the month.
            let start = parse_time("2026-11-25T10:00:00Z").unwrap();
            let clock = Arc::new(ManualClock::new(start));
            let limiter = Limiter::new(store.clone(), clock.clone(), LedgerSettings::default());
            let l = limits(period);
            // Every period below starts on a different day, so the shared scope never mixes them.
            spend(&limiter, &l, 600_000_000)
                .await
                .unwrap_or_else(|e| panic!("{backend} {period:?}: {e:?}"));
            assert!(
                matches!(spend(&limiter, &l, 600_000_000).await, Err(Denied::Budget { .. })),
                "{backend} {period:?}: a second $0.60 does not fit a $1 budget"
            );
            limiter.flush(true).await;
            let ps = period.start_of(start);
            assert_eq!(
                store.spent("key:k1", ps).await.unwrap(),
                600_000_000,
                "{backend} {period:?}"
            );
            match period.next_start(ps) {
                Some(next) => {
                    clock.set(next - 1);
                    assert!(
                        spend(&limiter, &l, 600_000_000).await.is_err(),
                        "{backend} {period:?}: not yet"
                    );
                    clock.set(next);
                    spend(&limiter, &l, 600_000_000)
                        .await
                        .unwrap_or_else(|e| panic!("{backend} {period:?}: a new period has a new budget: {e:?}"));
                    limiter.flush(true).await;
                    assert_eq!(store.spent("key:k1", next).await.unwrap(), 600_000_000);
                }
                None => {
                    clock.advance(400 * 86_400_000);
                    assert!(
                        spend(&limiter, &l, 600_000_000).await.is_err(),
                        "{backend}: total never resets"
                    );
                }
            }
        }
        store.close().await;
    }
}

#[tokio::test]
async fn a_lost_lease_expires_and_a_returned_one_is_reusable() {
    for (backend, url) in test_databases().await {
        let store = Store::connect(&url, 4).await.unwrap();
        let now = parse_time("2026-11-25T10:00:00Z").unwrap();
        // Holder A takes the whole budget and vanishes.
        let (g, _) = store
            .acquire_lease("key:lost", 0, DOLLAR, DOLLAR, "A", now, 60_000)
            .await
            .unwrap();
        assert_eq!(g, DOLLAR);
        let (g, _) = store
            .acquire_lease("key:lost", 0, DOLLAR, DOLLAR, "B", now + 1, 60_000)
            .await
            .unwrap();
        assert_eq!(g, 0, "{backend}: nothing left while A's lease lives");
        let (g, _) = store
            .acquire_lease("key:lost", 0, DOLLAR, DOLLAR, "B", now + 60_001, 60_000)
            .await
            .unwrap();
        assert_eq!(g, DOLLAR, "{backend}: A's lease expired");
        // B spends a quarter and returns the rest; C can lease exactly what is left.
        store
            .settle_lease("key:lost", 0, "B", DOLLAR / 4, 0, now + 60_002, 60_000)
            .await
            .unwrap();
        let (g, spent) = store
            .acquire_lease("key:lost", 0, DOLLAR, DOLLAR, "C", now + 60_003, 60_000)
            .await
            .unwrap();
        assert_eq!((g, spent), (DOLLAR * 3 / 4, DOLLAR / 4), "{backend}");
        store.close().await;
    }
}

#[tokio::test]
async fn concurrent_leases_never_exceed_the_limit() {
    for (backend, url) in test_databases().await {
        let store = Store::connect(&url, 8).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .acquire_lease("key:race", 0, DOLLAR, DOLLAR / 7, &format!("h{i}"), 1, 60_000)
                    .await
                    .unwrap()
                    .0
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, DOLLAR, "{backend}: leases add up to the limit exactly");
        store.close().await;
    }
}

#[tokio::test]
async fn an_unsettled_reservation_is_charged_at_its_worst_case() {
    let url = switchyard_tests::temp_sqlite_url();
    let store = Store::connect(&url, 2).await.unwrap();
    let limiter = Limiter::new(
        store.clone(),
        Arc::new(ManualClock::new(1_000)),
        LedgerSettings {
            flush_every: Duration::from_millis(10),
            ..LedgerSettings::default()
        },
    );
    let l = limits(Period::Total);
    let subject = [Subject {
        scope: "key:k1",
        limits: &l,
    }];
    let a = limiter.admit(&subject, 0, Nanos(300_000_000)).await.unwrap();
    drop(a); // the event that owned it was lost
    limiter.flush(true).await;
    assert_eq!(store.spent("key:k1", 0).await.unwrap(), 300_000_000);
    let (_, reserved, _) = limiter.local_view("key:k1").unwrap();
    assert_eq!(reserved, 0);
    store.close().await;
}

/// A request refused for an absurd worst case (here the largest cost there is) must not leave
/// the lease arithmetic to wrap: the next flush hands back a lease within the budget.
#[tokio::test]
async fn a_refused_huge_worst_case_leaves_the_lease_within_the_budget() {
    let url = switchyard_tests::temp_sqlite_url();
    let store = Store::connect(&url, 2).await.unwrap();
    let limiter = Limiter::new(
        store.clone(),
        Arc::new(ManualClock::new(1_000)),
        LedgerSettings::default(),
    );
    let l = limits(Period::Total);
    let subject = [Subject {
        scope: "key:k1",
        limits: &l,
    }];
    let held = limiter.admit(&subject, 0, Nanos(100_000_000)).await.unwrap();
    assert!(limiter.admit(&subject, 0, Nanos(i64::MAX)).await.is_err());
    limiter.flush(false).await;
    let (_, reserved, lease) = limiter.local_view("key:k1").unwrap();
    assert_eq!(reserved, 100_000_000);
    assert!((reserved..=1_000_000_000).contains(&lease), "lease {lease}");
    drop(held);
    limiter.flush(true).await;
    let (_, reserved, lease) = limiter.local_view("key:k1").unwrap();
    assert_eq!((reserved, lease), (0, 0));
    store.close().await;
}
