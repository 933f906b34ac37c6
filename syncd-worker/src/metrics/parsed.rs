//! Tests only (`cfg(test)` or feature `test-util`): a metrics file read back with a strict
//! parser of Prometheus' text format (`openmetrics-parser`: the grammar, escapes, one
//! family per name with consistent labels, no duplicate sample), so the unit tests and
//! the end-to-end tests judge the file as a scraper would, not by our own reading.

use std::collections::BTreeMap;

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{PrometheusType, PrometheusValue};

/// A parsed metrics file: each sample by `name{label="value",…}` (labels sorted by name,
/// values as written, escapes kept), and each family's type and help.
#[derive(Debug, Default)]
pub struct Parsed {
    pub samples: BTreeMap<String, f64>,
    /// Family name → ("counter" | "gauge" | …, help).
    pub families: BTreeMap<String, (String, String)>,
}

impl Parsed {
    /// The value of `key` (as [`Parsed::samples`] spells it), if there is such a sample.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.samples.get(key).copied()
    }
}

/// Parse `text`; an error says what the parser refused.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let exposition = parse_prometheus(text).map_err(|e| format!("{e:?}"))?;
    let mut out = Parsed::default();
    for (name, family) in &exposition.families {
        let kind = match family.family_type {
            PrometheusType::Counter => "counter",
            PrometheusType::Gauge => "gauge",
            PrometheusType::Histogram => "histogram",
            PrometheusType::Summary => "summary",
            PrometheusType::Unknown => "unknown",
        };
        out.families
            .insert(name.clone(), (kind.to_string(), family.help.clone()));
        for sample in family.iter_samples() {
            let value = match &sample.value {
                PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
                PrometheusValue::Counter(c) => c.value.as_f64(),
                other => return Err(format!("{name}: unexpected sample {other:?}")),
            };
            let mut labels: Vec<(String, String)> = sample
                .get_labelset()
                .map_err(|e| format!("{e:?}"))?
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let key = if labels.is_empty() {
                name.clone()
            } else {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                format!("{name}{{{}}}", l.join(","))
            };
            if out.samples.insert(key.clone(), value).is_some() {
                return Err(format!("two samples {key}"));
            }
        }
    }
    Ok(out)
}
