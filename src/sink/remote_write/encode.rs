//! Turning samples into a remote-write 1.0 request body: a protobuf `WriteRequest`,
//! compressed with snappy's **block** format (not the framed format, which
//! receivers refuse).
//!
//! The protobuf messages are the few from Prometheus' `prompb/types.proto` and
//! `remote.proto` that remote-write 1.0 uses, hand-written with `prost`'s derive so
//! that no `protoc` or build script is needed. Field numbers match the `.proto`.

use std::collections::BTreeMap;

use super::super::Sample;

/// The protobuf messages of remote-write 1.0.
pub mod proto {
    /// `prometheus.WriteRequest`. Field 3 (`metadata`) exists in the schema; this
    /// sink sends none.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        /// One entry per distinct label set.
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        /// Metric metadata (type, help); unused.
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    /// `prometheus.TimeSeries`: labels sorted by name, samples by timestamp.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// The label set, `__name__` included, sorted by name.
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        /// The samples, oldest first.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    /// `prometheus.Label`.
    #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
    pub struct Label {
        /// Label name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Label value.
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `prometheus.Sample`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// The value.
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    /// `prometheus.MetricMetadata` (only what is needed to keep field 3 typed).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricMetadata {
        /// The metric family's name.
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        /// Help text.
        #[prost(string, tag = "4")]
        pub help: String,
        /// Unit.
        #[prost(string, tag = "5")]
        pub unit: String,
    }
}

/// Why a sample cannot be sent at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSample {
    /// No `__name__` label, or an empty one.
    #[error("sample has no metric name (label `__name__`)")]
    MissingName,
    /// A label with an empty name.
    #[error("sample has a label with an empty name")]
    EmptyLabelName,
    /// The same label name twice.
    #[error("sample has label `{0}` more than once")]
    DuplicateLabel(String),
}

/// Checks what remote-write requires of one sample's labels.
pub fn check_sample(sample: &Sample) -> Result<(), InvalidSample> {
    let mut names: Vec<&str> = sample.labels.iter().map(|(name, _)| name.as_str()).collect();
    if names.iter().any(|name| name.is_empty()) {
        return Err(InvalidSample::EmptyLabelName);
    }
    if sample.name().is_none_or(str::is_empty) {
        return Err(InvalidSample::MissingName);
    }
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(InvalidSample::DuplicateLabel(pair[0].to_owned()));
    }
    Ok(())
}

/// Builds the `WriteRequest` for `samples`: one `TimeSeries` per distinct label set
/// (in label-set order, so the same input always gives the same bytes), labels
/// sorted by name, samples within a series sorted by timestamp. Labels with an
/// empty value are left out, as Prometheus treats them as absent.
pub fn write_request(samples: &[Sample]) -> proto::WriteRequest {
    let mut series: BTreeMap<Vec<proto::Label>, Vec<proto::Sample>> = BTreeMap::new();
    for sample in samples {
        let mut labels: Vec<proto::Label> = sample
            .labels
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| proto::Label { name: name.clone(), value: value.clone() })
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        series.entry(labels).or_default().push(proto::Sample { value: sample.value, timestamp: sample.timestamp_ms });
    }
    let timeseries = series
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|sample| sample.timestamp);
            proto::TimeSeries { labels, samples }
        })
        .collect();
    proto::WriteRequest { timeseries, metadata: Vec::new() }
}

/// The request body for `samples`: [`write_request`], protobuf-encoded, snappy
/// block-compressed.
pub fn encode_body(samples: &[Sample]) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(&write_request(samples));
    // Compressing a byte slice in memory fails only if it exceeds snappy's maximum
    // block size (about 4 GiB), far beyond any batch this sink builds.
    snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not valid snappy block data.
    #[error("body is not snappy block-compressed: {0}")]
    Snappy(#[from] snap::Error),
    /// Not a valid `WriteRequest`.
    #[error("body is not a protobuf WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Decodes a request body as a receiver would; for tests and debugging.
pub fn decode_body(body: &[u8]) -> Result<proto::WriteRequest, DecodeError> {
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(prost::Message::decode(raw.as_slice())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_label_set_sorts_labels_and_timestamps() {
        let samples = vec![
            Sample::new("m", [("z", "1"), ("a", "2")], 1.0, 2000),
            Sample::new("m", [("a", "2"), ("z", "1")], 2.0, 1000),
            Sample::new("m", [("a", "3")], 3.0, 1500),
        ];
        let request = decode_body(&encode_body(&samples)).unwrap();
        assert_eq!(request.timeseries.len(), 2);
        let first = &request.timeseries[0];
        let names: Vec<&str> = first.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "a", "z"]);
        let stamps: Vec<i64> = first.samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(stamps, [1000, 2000]);
        assert_eq!(request.timeseries[1].samples[0].value, 3.0);
    }

    #[test]
    fn checks_names_and_duplicates() {
        assert_eq!(check_sample(&Sample::new("m", [("a", "1")], 1.0, 1)), Ok(()));
        let unnamed = Sample { labels: vec![("a".into(), "1".into())], value: 1.0, timestamp_ms: 1 };
        assert_eq!(check_sample(&unnamed), Err(InvalidSample::MissingName));
        let twice = Sample::new("m", [("a", "1"), ("a", "2")], 1.0, 1);
        assert_eq!(check_sample(&twice), Err(InvalidSample::DuplicateLabel("a".into())));
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode_body(b"not snappy at all").is_err());
    }
}
