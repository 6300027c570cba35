//! Bounds on what a plugin returns. The sandbox bounds what a plugin may *use* (memory, time,
//! fuel); these bound what it may *hand back* — metadata entries and notifications — which the
//! host copies into manifests, the job index and notifications (SNS and SQS take 256 KB at
//! most). Each bound is a [`PluginLimits`] field, set in `plugin.toml` `[limits]` or where a
//! profile uses the plugin; past one the call fails with [`PluginErrorKind::OutputLimit`]
//! naming the bound and its setting. (Overlays are bounded by the rendition they are drawn
//! for, checked with their shape.)

use super::bindings::types;
use super::error::PluginErrorKind;
use super::limits::PluginLimits;

/// A bound broken: what was found, the limit, the setting.
fn over(found: String, limit: u32, setting: &'static str) -> PluginErrorKind {
    PluginErrorKind::OutputLimit {
        found,
        limit: u64::from(limit),
        setting,
    }
}

/// Fails when `n` (of `what`) is past `limit`.
fn at_most(n: usize, limit: u32, what: &str, setting: &'static str) -> Result<(), PluginErrorKind> {
    if n > limit as usize {
        return Err(over(format!("{n} {what}"), limit, setting));
    }
    Ok(())
}

/// Bytes a metadata value takes in the outputs (numbers count 8 bytes a field).
fn value_bytes(v: &types::MetadataValue) -> usize {
    match v {
        types::MetadataValue::Text(t) => t.len(),
        types::MetadataValue::Integer(_)
        | types::MetadataValue::Float(_)
        | types::MetadataValue::Boolean(_) => 8,
        types::MetadataValue::Rational(_) | types::MetadataValue::Timestamp(_) => 16,
        types::MetadataValue::Gps(_) => 24,
    }
}

/// A metadata extractor's result, against `limits`.
pub(super) fn entries(
    entries: &[types::MetadataEntry],
    limits: &PluginLimits,
) -> Result<(), PluginErrorKind> {
    at_most(
        entries.len(),
        limits.max_entries,
        "metadata entries",
        "max_entries",
    )?;
    let mut total = 0usize;
    for e in entries {
        let key = e.key.len();
        at_most(
            key,
            limits.max_key_bytes,
            "bytes in a metadata key",
            "max_key_bytes",
        )?;
        let value = value_bytes(&e.value);
        at_most(
            value,
            limits.max_value_bytes,
            "bytes in a metadata value",
            "max_value_bytes",
        )?;
        total += key + value;
    }
    at_most(
        total,
        limits.max_output_bytes,
        "bytes of metadata in all",
        "max_output_bytes",
    )
}

/// A notification rule's result, against `limits`.
pub(super) fn notifications(
    notes: &[types::Notification],
    limits: &PluginLimits,
) -> Result<(), PluginErrorKind> {
    at_most(
        notes.len(),
        limits.max_notifications,
        "notifications for one event",
        "max_notifications",
    )?;
    let mut total = 0usize;
    for n in notes {
        let strings = [n.sink.as_str(), n.subject.as_str(), n.body.as_str()]
            .into_iter()
            .chain(
                n.attributes
                    .iter()
                    .flat_map(|(k, v)| [k.as_str(), v.as_str()]),
            );
        for s in strings {
            at_most(
                s.len(),
                limits.max_value_bytes,
                "bytes in a notification's subject, body or attribute",
                "max_value_bytes",
            )?;
            total += s.len();
        }
    }
    at_most(
        total,
        limits.max_output_bytes,
        "bytes of notifications in all",
        "max_output_bytes",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(key: &str, value: &str) -> types::MetadataEntry {
        types::MetadataEntry {
            key: key.into(),
            value: types::MetadataValue::Text(value.into()),
        }
    }

    fn setting(r: Result<(), PluginErrorKind>) -> Option<&'static str> {
        match r {
            Err(PluginErrorKind::OutputLimit { setting, .. }) => Some(setting),
            _ => None,
        }
    }

    #[test]
    fn each_metadata_bound_names_its_setting() {
        let l = PluginLimits {
            max_entries: 3,
            max_key_bytes: 8,
            max_value_bytes: 10,
            max_output_bytes: 40,
            ..PluginLimits::default()
        };
        assert!(entries(&[text("a", "b"), text("c", "d")], &l).is_ok());
        let four = vec![text("a", "b"); 4];
        assert_eq!(setting(entries(&four, &l)), Some("max_entries"));
        assert_eq!(
            setting(entries(&[text("longer-key", "v")], &l)),
            Some("max_key_bytes")
        );
        assert_eq!(
            setting(entries(&[text("k", "eleven-byte")], &l)),
            Some("max_value_bytes")
        );
        let full = vec![text("key12345", "value12345"); 3];
        assert_eq!(setting(entries(&full, &l)), Some("max_output_bytes"));
        let err = entries(&four, &l).expect_err("over");
        assert!(
            err.to_string()
                .contains("4 metadata entries, over its limit of 3 (`limits.max_entries`"),
            "{err}"
        );
    }

    #[test]
    fn notifications_are_bounded_in_count_and_bytes() {
        let note = |body: &str| types::Notification {
            sink: "log".into(),
            subject: "s".into(),
            body: body.into(),
            attributes: vec![("k".into(), "v".into())],
        };
        let l = PluginLimits {
            max_notifications: 2,
            max_value_bytes: 100,
            max_output_bytes: 150,
            ..PluginLimits::default()
        };
        assert!(notifications(&[note("x"), note("y")], &l).is_ok());
        assert_eq!(
            setting(notifications(&vec![note("x"); 3], &l)),
            Some("max_notifications")
        );
        assert_eq!(
            setting(notifications(&[note(&"b".repeat(101))], &l)),
            Some("max_value_bytes")
        );
        assert_eq!(
            setting(notifications(&vec![note(&"b".repeat(90)); 2], &l)),
            Some("max_output_bytes")
        );
    }

    #[test]
    fn defaults_fit_a_notification_sink() {
        let d = PluginLimits::default();
        assert!(d.validate().is_ok());
        assert!(d.max_output_bytes <= crate::config::MAX_OUTPUT_BYTES);
        let too_much = PluginLimits {
            max_output_bytes: 300 * 1024,
            ..d
        };
        assert!(too_much.validate().is_err());
    }
}
