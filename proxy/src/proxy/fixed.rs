//! Answering the routes that do not proxy: a `redirect` route's 302, and a `return` route's
//! fixed response, edited by the route's response plugins (`headers`, as nginx's
//! `add_header` applies to `return`), written without an upstream; or, for `444`, the
//! connection closed without an answer.

use super::failover::redirect;
use crate::fixed_response::{FixedResponse, RequestFacts, CLOSE};
use crate::router::{Route, Target};
use pingora::prelude::*;
use pingora::ErrorType;
use weir_plugins::RequestCtx;

/// The error that closes the connection of a `return: {status: 444}` request: it answers
/// nothing ([`is_close`] in `fail_to_proxy`) and is logged as 444.
fn close() -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(CLOSE), "return 444")
}

/// Is `e` the error of a `return: {status: 444}`?
pub(super) fn is_close(e: &Error) -> bool {
    e.etype() == &ErrorType::HTTPStatus(CLOSE)
}

/// Answers the request when `route` does not proxy (`redirect`, `return`): `true` when it
/// was answered.
pub(super) async fn answered(
    session: &mut Session,
    route: &Route,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    match &route.target {
        Target::Upstream(_) => return Ok(false),
        Target::Redirect(upstream) => redirect(session, upstream).await?,
        Target::Return(answer) => respond(session, route, answer, ctx).await?,
    }
    Ok(true)
}

/// Writes `answer` to the client, keeping the connection open (or, for `444`, fails with
/// the error that closes it).
async fn respond(
    session: &mut Session,
    route: &Route,
    answer: &FixedResponse,
    ctx: &mut RequestCtx,
) -> Result<()> {
    if answer.closes() {
        return Err(close());
    }
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
