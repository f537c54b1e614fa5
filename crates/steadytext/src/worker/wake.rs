//! Which workers claim when new requests are announced.
//!
//! Every worker LISTENs on `steadytext_jobs` and receives every announcement. If each claimed
//! at once, one new request would wake a dozen workers into a dozen claims, eleven of them
//! empty. So the announcement's token picks a first worker among the live ones (sorted by id,
//! as each worker read them with its settings: [`Peers`]), and as many consecutive workers as
//! the requests need (the requests over this worker's slots, rounded up) claim at once; a
//! statement that enqueues thousands wakes them all. The others look again after their poll
//! interval: the safety net for a picked worker that died, or whose slots are full, or a list
//! that changed since it was read. An announcement without a token (pg_steadytext 0.1.0, a
//! derivation starting its walk) wakes every worker.

use steadytext_api::notifications::Announcement;

/// The live workers as this worker last read them: ids in sorted order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers(pub Vec<String>);

impl Peers {
    /// Whether worker `me`, with `slots` slots, claims at once on `announcement`.
    pub fn picked(&self, me: &str, announcement: Option<&Announcement>, slots: u32) -> bool {
        let Some(a) = announcement else { return true };
        let n = self.0.len();
        let Some(rank) = self.0.iter().position(|id| id == me) else { return true };
        if n < 2 {
            return true;
        }
        let wanted = a.requests.div_ceil(u64::from(slots.max(1))).clamp(1, n as u64) as usize;
        let first = (fnv1a(a.token.as_bytes()) % n as u64) as usize;
        (rank + n - first) % n < wanted
    }
}

/// FNV-1a (64 bits): every worker must map a token to the same first worker, whatever its
/// build, so a fixed, documented hash rather than the standard library's seeded one.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Peers {
        Peers((0..n).map(|i| format!("w{i:02}")).collect())
    }

    fn announce(token: &str, requests: u64) -> Announcement {
        Announcement { token: token.into(), requests }
    }

    /// How many of `p` claim at once on `a`.
    fn claimers(p: &Peers, a: &Announcement, slots: u32) -> usize {
        p.0.iter().filter(|me| p.picked(me, Some(a), slots)).count()
    }

    #[test]
    fn one_request_wakes_one_worker_and_a_big_batch_wakes_all() {
        let p = peers(12);
        for i in 0..100 {
            assert_eq!(claimers(&p, &announce(&format!("77.{i}"), 1), 16), 1);
        }
        assert_eq!(claimers(&p, &announce("77.1", 40), 16), 3);
        assert_eq!(claimers(&p, &announce("77.1", 20_000), 16), 12);
        // zero slots counts as one, zero requests as one
        assert_eq!(claimers(&p, &announce("77.1", 0), 0), 1);
    }

    #[test]
    fn tokens_spread_the_first_worker_over_every_worker() {
        let p = peers(12);
        let mut first = std::collections::HashSet::new();
        for i in 0..500 {
            let a = announce(&format!("4242.{i}"), 1);
            first.extend(p.0.iter().filter(|me| p.picked(me, Some(&a), 16)).cloned());
        }
        assert_eq!(first.len(), 12);
    }

    #[test]
    fn everyone_looks_without_a_token_a_list_or_a_place_in_it() {
        let p = peers(12);
        assert!(p.0.iter().all(|me| p.picked(me, None, 16)));
        assert!(Peers::default().picked("w00", Some(&announce("1.1", 1)), 16));
        assert!(peers(1).picked("w00", Some(&announce("1.1", 1)), 16));
        assert!(p.picked("not-listed-yet", Some(&announce("1.1", 1)), 16));
    }
}
