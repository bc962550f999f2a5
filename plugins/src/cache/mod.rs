//! The disk cache: storage on disk ([`storage`]), nginx's freshness rules ([`policy`]), the
//! key template ([`key`]), and the zone/plugin glue the proxy's cache phases use.

pub mod storage;
