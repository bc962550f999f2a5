//! Per-request state handed to every plugin hook: facts every plugin needs (client IP,
//! route, the normalised path) and typed slots where each plugin keeps its own state.
//!
//! The slots are keyed by type, so the context never has to know which plugins exist: a
//! plugin defines a private type and stores it, and nobody else can name it.

use crate::NormalizedPath;
use std::any::{Any, TypeId};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// What one request carries through the plugin chain.
pub struct RequestCtx {
    /// The client's address: the peer, or the address taken from the real-IP header when the
    /// peer is a trusted proxy. `None` for a peer that is not an IP socket.
    pub client_ip: Option<IpAddr>,
    /// The name of the route that matched.
    pub route: Arc<str>,
    /// `true` when the client connection is TLS.
    pub tls: bool,
    /// The request path after nginx's normalisation, the one every path-based decision
    /// compares (the raw target, as sent, is what goes upstream and into the access log).
    pub path: NormalizedPath,
    delay: Duration,
    slots: Slots,
}

impl RequestCtx {
    /// A context for a request to `path` that matched `route`.
    pub fn new(
        client_ip: Option<IpAddr>,
        route: Arc<str>,
        tls: bool,
        path: NormalizedPath,
    ) -> Self {
        RequestCtx {
            client_ip,
            route,
            tls,
            path,
            delay: Duration::ZERO,
            slots: Slots::default(),
        }
    }

    /// Asks the pipeline to hold the request for `delay` before it goes on (a rate limiter's
    /// wait). The pipeline waits once, after every access-phase plugin has run, for the
    /// longest delay asked; a client that disconnects meanwhile is dropped at once.
    pub fn request_delay(&mut self, delay: Duration) {
        self.delay = self.delay.max(delay);
    }

    /// The longest delay asked so far.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Stores `value` in the slot of its type, returning what was there.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) -> Option<T> {
        self.slots.insert(value)
    }

    /// The value in the slot of type `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.slots.get()
    }

    /// The value in the slot of type `T`, mutably.
    pub fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        self.slots.get_mut()
    }

    /// Takes the value out of the slot of type `T`.
    pub fn remove<T: Any + Send + Sync>(&mut self) -> Option<T> {
        self.slots.remove()
    }
}

/// A small type map. A request rarely holds more than a handful of slots, so a vector
/// scanned by `TypeId` beats hashing, and an empty one costs no allocation.
#[derive(Default)]
struct Slots(Vec<(TypeId, Box<dyn Any + Send + Sync>)>);

impl Slots {
    fn position<T: Any>(&self) -> Option<usize> {
        let id = TypeId::of::<T>();
        self.0.iter().position(|(t, _)| *t == id)
    }

    fn insert<T: Any + Send + Sync>(&mut self, value: T) -> Option<T> {
        let old = self.remove::<T>();
        self.0.push((TypeId::of::<T>(), Box::new(value)));
        old
    }

    fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let i = self.position::<T>()?;
        self.0[i].1.downcast_ref()
    }

    fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        let i = self.position::<T>()?;
        self.0[i].1.downcast_mut()
    }

    fn remove<T: Any + Send + Sync>(&mut self) -> Option<T> {
        let i = self.position::<T>()?;
        let (_, boxed) = self.0.swap_remove(i);
        boxed.downcast().ok().map(|b| *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mine(u32);
    struct Theirs(&'static str);

    #[test]
    fn slots_are_typed_and_independent() {
        let mut ctx = RequestCtx::new(None, Arc::from("r"), false, NormalizedPath::root());
        assert!(ctx.get::<Mine>().is_none());
        ctx.insert(Mine(1));
        ctx.insert(Theirs("x"));
        ctx.get_mut::<Mine>().unwrap().0 += 1;
        assert_eq!(ctx.get::<Mine>().unwrap().0, 2);
        assert_eq!(ctx.insert(Mine(7)).map(|m| m.0), Some(2));
        assert_eq!(ctx.remove::<Theirs>().map(|t| t.0), Some("x"));
        assert!(ctx.get::<Theirs>().is_none());
        assert_eq!(ctx.get::<Mine>().unwrap().0, 7);
    }
}
