//! The disk cache: storage on disk ([`storage`]), nginx's freshness rules ([`policy`]), the
//! key template ([`key`]), and the zone/plugin glue the proxy's cache phases use.
//!
//! The storage's rooms import one way, each only from those listed before it: the object
//! file format ([`file`]); the pure LRU index ([`index`]); the memory tier ([`memory`]); the
//! open-file cache ([`open_files`]); the catalog keeping index, memory tier and open files in
//! step ([`catalog`]); a zone's directory and its
//! object-level operations ([`zone_dir`]); the loader, eviction and sweeper ([`upkeep`]); the
//! pingora `Storage` impl with its hit and miss handlers ([`storage`]); plain fresh HITs for
//! the proxy's fast path, without pingora-cache ([`fresh`]).

pub mod catalog;
pub mod file;
pub mod fresh;
pub mod index;
pub mod key;
pub mod memory;
pub mod open_files;
pub mod plugin;
pub mod policy;
pub mod storage;
pub mod upkeep;
pub mod zone;
pub mod zone_dir;

pub use plugin::CachePlugin;
pub use zone::CacheZone;
