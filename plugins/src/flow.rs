//! What a plugin's request hook tells the pipeline to do next.

/// The answer of [`crate::Plugin::request_filter`].
///
/// An enum rather than `Ok(true)`: the name says what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Run the next plugin, then go on to the upstream.
    Continue,
    /// The plugin wrote a complete response to the client; nothing else runs for this
    /// request except the `logging` hooks.
    Responded,
}
