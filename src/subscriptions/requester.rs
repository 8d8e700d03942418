//! Who holds a topic in the registry.

use std::fmt;

/// A holder of topics. Each topic is ref-counted by requester, so a topic wanted by several is
/// subscribed upstream once.
///
/// The database and the REST API keep the plain service name; [`Requester::named`] converts it
/// at those edges.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requester {
    /// A service, by its `requesting_service` name (REST API subscriptions, or a pipeline-file
    /// subscription that names a service).
    Service(String),
    /// A `/ws` connection, by its connection id.
    WsClient(u64),
    /// The pipeline file's startup subscriptions (`requesting_service` absent).
    PipelineFile,
}

impl Requester {
    /// The name the pipeline file's own subscriptions are stored under (reserved in the API).
    pub const PIPELINE_FILE_NAME: &'static str = "pipeline";

    /// The requester of a stored or configured `requesting_service` name.
    pub fn named(name: &str) -> Self {
        if name == Self::PIPELINE_FILE_NAME {
            Self::PipelineFile
        } else {
            Self::Service(name.to_owned())
        }
    }

    /// Whether this is a service (only services have `subscriptions` rows and queue bindings).
    pub fn is_service(&self) -> bool {
        matches!(self, Self::Service(_))
    }
}

impl fmt::Display for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service(name) => f.write_str(name),
            Self::WsClient(id) => write!(f, "ws:{id}"),
            Self::PipelineFile => f.write_str(Self::PIPELINE_FILE_NAME),
        }
    }
}

/// A bare name, as [`Requester::named`].
impl From<&str> for Requester {
    fn from(name: &str) -> Self {
        Self::named(name)
    }
}

impl From<&Requester> for Requester {
    fn from(r: &Requester) -> Self {
        r.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_convert_at_the_edges_and_print_as_before() {
        assert_eq!(Requester::named("pipeline"), Requester::PipelineFile);
        assert_eq!(Requester::from("svc"), Requester::Service("svc".into()));
        assert_eq!(Requester::WsClient(7).to_string(), "ws:7");
        assert_eq!(Requester::PipelineFile.to_string(), "pipeline");
        assert!(!Requester::WsClient(7).is_service());
    }
}
