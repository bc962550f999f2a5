//! The balancers of one tier: nginx's smooth weighted round robin (with `effective_weight`
//! ramp-up), weighted random, and ketama consistent hashing. Each picks among the slots a
//! filter accepts (usable, not tried yet by this request).

use super::tier::{Slot, TierPool};

/// nginx `ngx_http_upstream_get_peer`: add each candidate's effective weight to its current
/// weight (ramping effective weight back up by one), take the highest, subtract the total.
pub(super) fn pick_wrr(slots: &mut [Slot], ok: impl Fn(&Slot) -> bool) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    let mut total = 0;
    for (i, s) in slots.iter_mut().enumerate() {
        if !ok(s) {
            continue;
        }
        s.current += s.effective;
        total += s.effective;
        if s.effective < s.weight() {
            s.effective += 1;
        }
        if best.is_none_or(|(_, c)| s.current > c) {
            best = Some((i, s.current));
        }
    }
    let (i, _) = best?;
    slots[i].current -= total;
    Some(i)
}

/// Weighted random among the candidates.
pub(super) fn pick_random(slots: &[Slot], ok: impl Fn(&Slot) -> bool) -> Option<usize> {
    let total: u64 = slots
        .iter()
        .filter(|s| ok(s))
        .map(|s| u64::from(s.peer.spec.weight))
        .sum();
    if total == 0 {
        return None;
    }
    let mut n = fastrand::u64(0..total);
    for (i, s) in slots.iter().enumerate() {
        if !ok(s) {
            continue;
        }
        let w = u64::from(s.peer.spec.weight);
        if n < w {
            return Some(i);
        }
        n -= w;
    }
    None
}

/// The first candidate clockwise from the key's point on the tier's ketama ring, so a key
/// stays on its server while that server is usable.
pub(super) fn pick_hash(tier: &TierPool, key: &[u8], ok: impl Fn(&Slot) -> bool) -> Option<usize> {
    let (ring, _) = tier.ring.as_ref()?;
    // 160 points per unit of weight; looking at every point once is the bound.
    let points: usize = tier
        .slots
        .iter()
        .map(|s| s.peer.spec.weight as usize * 160)
        .sum();
    for addr in ring.node_iter(key).take(points) {
        let found = tier
            .slots
            .iter()
            .position(|s| s.peer.addr().as_ref() == Some(addr));
        if let Some(i) = found {
            if ok(&tier.slots[i]) {
                return Some(i);
            }
        }
    }
    None
}
