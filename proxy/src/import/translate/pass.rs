//! `proxy_pass URL`: the scheme and the target (an upstream block's name or `host:port`),
//! or a report when weir cannot forward as nginx would (variables, a URI part that
//! replaces the location's prefix).

use super::Tx;
use crate::import::parser::Directive;
use crate::import::SyntaxError;

/// `proxy_pass URL` → (tls, target); `None` when reported.
pub fn parse_pass(
    tx: &mut Tx,
    pass: &Directive,
    prefix: &str,
) -> Result<Option<(bool, String)>, SyntaxError> {
    let url = Tx::arg(pass, 0)?;
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(Tx::invalid(
            pass,
            format!("invalid URL prefix in \"{url}\""),
        ));
    };
    if url.contains('$') {
        tx.report
            .left(pass, "a proxy_pass with variables has no weir equivalent");
        return Ok(None);
    }
    let (host, uri) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !uri.is_empty() && uri != prefix {
        tx.report.left(
            pass,
            format!("proxy_pass with a URI replaces the location's prefix `{prefix}` with `{uri}`; weir forwards the request target unchanged"),
        );
        return Ok(None);
    }
    Ok(Some((tls, host.to_string())))
}
