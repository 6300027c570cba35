//! `exif`: a metadata-extractor plugin. Finds the EXIF block in JPEG (APP1), PNG (`eXIf`),
//! WebP (`EXIF` chunk) and TIFF sources by walking the container's headers — image data is
//! skipped by seeking, never read — and returns camera, lens, exposure, date, orientation and,
//! only when configured with `gps = "keep"`, the GPS position.
//!
//! Configuration: `gps` = `"strip"` (default) or `"keep"`.

mod container;
mod fields;

use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source, SourceReader, config};

#[mediaflow_plugin_sdk::metadata_extractor]
fn extract(info: MediaInfo, src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
    let keep_gps = match config::get_or("gps", "strip").trim_matches('"') {
        "keep" => true,
        "strip" => false,
        other => {
            return Err(PluginError::BadConfig(format!(
                "config key `gps` must be \"keep\" or \"strip\", got {other:?}"
            )));
        }
    };
    let mut reader = SourceReader::with_chunk(src, 16 * 1024);
    let Some(raw) = container::find_exif(&mut reader, &info.format)? else {
        mediaflow_plugin_sdk::debug!("no EXIF block in {}", info.uri);
        return Ok(Vec::new());
    };
    let entries = fields::entries(raw, keep_gps)?;
    mediaflow_plugin_sdk::debug!(
        "{} entries from {} ({} bytes read)",
        entries.len(),
        info.uri,
        reader.bytes_fetched()
    );
    Ok(entries)
}
