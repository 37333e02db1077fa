//! What each layer came to: active (and how), unavailable (and why), or off. The helper writes
//! one report line to the upstream's stderr as it starts it (the gateway logs it), and
//! `portcullis doctor` reads a probe's report.

use serde::{Deserialize, Serialize};

use crate::spec::Layer;

/// How one layer came out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum Status {
    /// In force.
    Active(String),
    /// Wanted, not to be had here.
    Unavailable(String),
    /// Not wanted (the config or the situation does not call for it).
    Off(String),
}

/// Every layer's status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// In setup order.
    pub layers: Vec<(Layer, Status)>,
}

/// The prefix of the report line on the upstream's stderr.
pub const LINE_PREFIX: &str = "portcullis-sandbox: ";

impl Report {
    /// Records a layer's status (replacing an earlier one).
    pub fn set(&mut self, layer: Layer, status: Status) {
        self.layers.retain(|(l, _)| *l != layer);
        self.layers.push((layer, status));
        self.layers.sort_by_key(|(l, _)| Layer::ALL.iter().position(|x| x == l));
    }

    /// A layer's status, if recorded.
    pub fn get(&self, layer: Layer) -> Option<&Status> {
        self.layers.iter().find(|(l, _)| *l == layer).map(|(_, s)| s)
    }

    /// One line for a log: `landlock=active(abi 7) seccomp=active …`.
    pub fn summary(&self) -> String {
        self.layers
            .iter()
            .map(|(l, s)| match s {
                Status::Active(d) if d.is_empty() => format!("{}=active", l.as_str()),
                Status::Active(d) => format!("{}=active({d})", l.as_str()),
                Status::Unavailable(d) => format!("{}=UNAVAILABLE({d})", l.as_str()),
                Status::Off(d) => format!("{}=off({d})", l.as_str()),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The report as the JSON a probe prints.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a probe's report.
    pub fn from_json(text: &str) -> Option<Report> {
        serde_json::from_str(text).ok()
    }
}
