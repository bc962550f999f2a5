//! Answering a `return` route: the fixed response, edited by the route's response plugins
//! (`headers`, as nginx's `add_header` applies to `return`), written without an upstream.

use crate::fixed_response::{FixedResponse, RequestFacts};
use crate::router::Route;
use pingora::prelude::*;
use weir_plugins::RequestCtx;

/// Writes `answer` to the client, keeping the connection open.
pub(super) async fn respond(
    session: &mut Session,
    route: &Route,
    answer: &FixedResponse,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let local = session.server_addr().and_then(|a| a.as_inet()).copied();
    let facts = RequestFacts {
        req: session.req_header(),
        tls: ctx.tls,
        path: &ctx.path,
        local,
    };
    let (mut head, body) = answer.render(&facts)?;
    for plugin in &route.plugins {
        plugin.response_filter(session, &mut head, ctx)?;
    }
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(body), true).await
}
