//! The disk cache: storage on disk ([`storage`]), nginx's freshness rules ([`policy`]), the
//! key template ([`key`]), and the zone/plugin glue the proxy's cache phases use.

pub mod file;
pub mod index;
pub mod key;
pub mod plugin;
pub mod policy;
pub mod storage;
pub mod zone;

pub use plugin::CachePlugin;
pub use zone::CacheZone;
