//! A well-behaved metadata extractor built against the frozen `mediaflow:plugin@0.1.0`
//! (`wit/frozen/0.1.0`), as a plugin published before the 0.1.1 bump was. It uses every
//! interface of 0.1.0 — `host` (log, config, config-keys), `input` (size, read) and `types` —
//! so loading it on a newer engine exercises each import and the `extractor@0.1.0` export.

#[cfg(target_arch = "wasm32")]
#[allow(missing_docs, unsafe_code, clippy::all)]
mod plugin {
    wit_bindgen::generate!({
        path: "../../../wit/frozen/0.1.0",
        world: "mediaflow:plugin/metadata-extractor@0.1.0",
    });

    use exports::mediaflow::plugin::extractor::Guest;
    use mediaflow::plugin::host::{self, LogLevel};
    use mediaflow::plugin::input::Source;
    use mediaflow::plugin::types::{MediaInfo, MetadataEntry, MetadataValue, PluginError};

    struct Plugin;

    impl Guest for Plugin {
        fn extract(info: MediaInfo, src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
            let head = src
                .read(0, 4)
                .map_err(|e| PluginError::Failed(format!("read: {e:?}")))?;
            let magic: String = head.iter().map(|b| format!("{b:02x}")).collect();
            let label = host::config("label").unwrap_or_else(|| "none".into());
            host::log(LogLevel::Info, &format!("0.1.0 guest read {magic}"));
            let entry = |key: &str, value| MetadataEntry {
                key: key.into(),
                value,
            };
            Ok(vec![
                entry("file.magic", MetadataValue::Text(magic)),
                entry("file.bytes", MetadataValue::Integer(src.size() as i64)),
                entry("info.format", MetadataValue::Text(info.format)),
                entry("config.label", MetadataValue::Text(label)),
                entry(
                    "config.keys",
                    MetadataValue::Integer(host::config_keys().len() as i64),
                ),
            ])
        }
    }

    export!(Plugin);
}
