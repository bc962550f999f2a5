//! The built-in `limit_req` plugin: nginx's `limit_req` on a zone under `limits:`.
//!
//! ```yaml
//! - limit_req: { zone: per_ip, burst: 20, nodelay: true }   # or delay: 8; status: 429; dry_run: true
//! ```
//! Several `limit_req` entries on one route behave as nginx's: the first that rejects
//! answers and the zones charged before it are restored; when all pass, the request waits
//! the longest of their delays (the pipeline does the waiting, see
//! [`RequestCtx::request_delay`]). A zone with a Redis `store` decides in Redis (one script
//! per request, at most `store_timeout`) and locally while Redis is unreachable; its charges
//! are taken back in Redis too.

use crate::build::{BuildContext, BuildPlugin};
use crate::config::{answer_status, join, ConfigErrors};
use crate::leaky_bucket::{BucketLimits, Verdict};
use crate::limit_zone::{Charge, LimitZone};
use crate::respond::{client_for_log, respond_text, suppressed_note, LogLimiter};
use crate::{Flow, Plugin, RequestCtx};
use async_trait::async_trait;
use pingora::proxy::Session;
use pingora::Result;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// YAML config of `limit_req`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitReqConfig {
    /// Zone under `limits:`.
    pub zone: String,
    /// Requests allowed above the rate.
    #[serde(default)]
    pub burst: u32,
    /// Serve the whole burst without delay.
    #[serde(default)]
    pub nodelay: bool,
    /// Serve this many of the burst without delay.
    pub delay: Option<u32>,
    /// Rejection status (default 503, like nginx).
    pub status: Option<u16>,
    /// Count what would happen, never reject or delay.
    #[serde(default)]
    pub dry_run: bool,
}

/// The built plugin.
pub struct LimitReq {
    zone: Arc<LimitZone>,
    limits: BucketLimits,
    status: u16,
    dry_run: bool,
    log: LogLimiter,
}

/// The buckets this request charged so far, restored when a later `limit_req` rejects it.
#[derive(Default)]
struct Charged(Vec<ZoneCharge>);

/// One bucket a request charged: the zone, the key, and what was charged (where, before,
/// after).
struct ZoneCharge(Arc<LimitZone>, Vec<u8>, Charge);

impl BuildPlugin for LimitReq {
    const NAME: &'static str = "limit_req";
    type Config = LimitReqConfig;

    fn build(c: LimitReqConfig, path: &str, ctx: &BuildContext) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let zone = ctx
            .limits
            .find(&c.zone, "limits", &join(path, "zone"), &mut errors);
        if c.nodelay && c.delay.is_some() {
            errors.push(join(path, "delay"), "use either nodelay or delay, not both");
        }
        let status = answer_status(c.status, 503, path, &mut errors);
        let burst = u64::from(c.burst);
        let delay = if c.nodelay {
            burst
        } else {
            u64::from(c.delay.unwrap_or(0))
        };
        match zone {
            Some(zone) if errors.is_empty() => Ok(LimitReq {
                limits: BucketLimits {
                    rate: zone.spec.rate,
                    burst,
                    delay,
                },
                zone,
                status,
                dry_run: c.dry_run,
                log: LogLimiter::default(),
            }),
            _ => Err(errors),
        }
    }
}

#[async_trait]
impl Plugin for LimitReq {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Flow> {
        let mut key = Vec::with_capacity(16);
        self.zone
            .spec
            .key
            .extract(session.req_header(), ctx, &mut key);
        let counters = &self.zone.counters;
        match self.zone.decide(&key, self.limits).await {
            (Verdict::Pass { delay_ms, state }, charge) => {
                if delay_ms > 0 {
                    self.zone.count(&counters.delayed);
                    if !self.dry_run {
                        if let Some(suppressed) = self.log.allow() {
                            log::info!(
                                "limit_req: delaying {} by {delay_ms} ms in zone {} (excess {}.{:03}){}",
                                client_for_log(ctx.client_ip),
                                self.zone.name,
                                state.excess / 1000,
                                state.excess % 1000,
                                suppressed_note(suppressed)
                            );
                        }
                        ctx.request_delay(Duration::from_millis(delay_ms));
                    }
                } else {
                    self.zone.count(&counters.passed);
                }
                if let Some(charge) = charge {
                    if ctx.get::<Charged>().is_none() {
                        ctx.insert(Charged::default());
                    }
                    if let Some(charged) = ctx.get_mut::<Charged>() {
                        charged.0.push(ZoneCharge(self.zone.clone(), key, charge));
                    }
                }
                Ok(Flow::Continue)
            }
            (Verdict::Reject { retry_after_ms }, _) => {
                let counter = if self.dry_run {
                    &counters.dry_run_rejected
                } else {
                    &counters.rejected
                };
                self.zone.count(counter);
                if let Some(suppressed) = self.log.allow() {
                    log::info!(
                        "limit_req: {} {} in zone {} (over burst {}){}",
                        if self.dry_run {
                            "would reject (dry run)"
                        } else {
                            "rejecting"
                        },
                        client_for_log(ctx.client_ip),
                        self.zone.name,
                        self.limits.burst,
                        suppressed_note(suppressed)
                    );
                }
                if self.dry_run {
                    return Ok(Flow::Continue);
                }
                // nginx does not charge the zones checked before the one that rejects.
                if let Some(charged) = ctx.remove::<Charged>() {
                    for ZoneCharge(zone, key, charge) in charged.0 {
                        zone.take_back(&key, charge);
                    }
                }
                let retry_after = retry_after_ms.div_ceil(1000).max(1).to_string();
                let body = if self.status == 429 {
                    "429 Too Many Requests\n"
                } else {
                    "503 Service Temporarily Unavailable\n"
                };
                let body = if matches!(self.status, 429 | 503) {
                    body
                } else {
                    "request rate limited\n"
                };
                respond_text(session, self.status, body, &[("Retry-After", retry_after)]).await?;
                Ok(Flow::Responded)
            }
        }
    }
}
