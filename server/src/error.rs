//! The server's storage error, and a way to print any error with its causes.

/// Storage failed, or holds what this server cannot read: nothing more
/// can be acknowledged. Its [`source`](std::error::Error::source) is the
/// database's own error, when there is one; [`Chain`] shows them all.
#[derive(Debug, thiserror::Error)]
#[error("storage failed: {what}")]
pub struct StorageError {
    what: String,
    #[source]
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StorageError {
    /// A failure with no underlying error (stored data that is invalid, say).
    pub(crate) fn new(what: impl Into<String>) -> StorageError {
        StorageError { what: what.into(), cause: None }
    }

    /// A failure in `what`, caused by `cause`.
    pub(crate) fn caused(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> StorageError {
        StorageError { what: what.into(), cause: Some(Box::new(cause)) }
    }
}

/// An error and every cause under it, `outer: inner: innermost`, for logs
/// and messages, so the cause at the bottom (a refused connection under a
/// database client's "error connecting to server") is never dropped. A
/// cause its outer error already ends with (many errors print their
/// cause and also return it as the source) is not repeated.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut outer = self.0.to_string();
        f.write_str(&outer)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !outer.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            outer = text;
            cause = error.source();
        }
        Ok(())
    }
}
