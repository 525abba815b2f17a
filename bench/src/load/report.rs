//! Goose's HTML report loads its chart library (ECharts 5.2.2) from a CDN: offline, or behind a
//! firewall, every chart is blank and only the tables show. Each report gets the library
//! inlined instead, from the copy shipped in `bench/assets` (npm `echarts@5.2.2`,
//! `dist/echarts.min.js`, gzipped; Apache-2.0, its LICENSE and NOTICE beside it).

use std::io::Read;

/// The tag goose 0.19 writes (its report template).
const CDN_SCRIPT: &str = r#"<script src="https://cdn.jsdelivr.net/npm/echarts@5.2.2/dist/echarts.min.js"></script>"#;

/// ECharts as npm ships it, gzipped.
const ECHARTS_GZ: &[u8] = include_bytes!("../../assets/echarts-5.2.2.min.js.gz");

/// The library's source.
pub fn echarts() -> Result<String, String> {
    let mut js = String::new();
    flate2::read::GzDecoder::new(ECHARTS_GZ)
        .read_to_string(&mut js)
        .map_err(|e| format!("the shipped ECharts does not decompress: {e}"))?;
    Ok(js)
}

/// `html` with the CDN's script replaced by the library itself; an error when the report has
/// no such tag (goose changed its template: the charts would need the internet again).
pub fn inline_charts(html: &str) -> Result<String, String> {
    if !html.contains(CDN_SCRIPT) {
        return Err("goose's report no longer loads ECharts 5.2.2 from the CDN as expected; update report.rs".into());
    }
    let js = echarts()?;
    // A script element ends at the first `</script`: the library has none.
    if js.contains("</script") {
        return Err("the shipped ECharts holds `</script`, which would end its inline element".into());
    }
    Ok(html.replacen(CDN_SCRIPT, &format!("<script>{js}</script>"), 1))
}

/// Rewrites the report at `path` so its charts draw without the internet.
pub fn make_offline(path: &str) -> Result<(), String> {
    let html = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let offline = inline_charts(&html)?;
    std::fs::write(path, offline).map_err(|e| format!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_library_is_echarts_5_2_2_as_npm_ships_it() {
        use sha2::{Digest, Sha256};
        let js = echarts().expect("decompresses");
        let digest: String = Sha256::digest(js.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // sha256 of `dist/echarts.min.js` in npm's echarts-5.2.2.tgz.
        assert_eq!(
            digest,
            "889c41d0bedb94d65300506efc44937d56954ea16b4de21279693b45411e3c56"
        );
    }

    #[test]
    fn a_report_loads_nothing_from_the_internet() {
        let report = format!("<html><head>{CDN_SCRIPT}</head><body><script>echarts.init()</script></body></html>");
        let offline = inline_charts(&report).expect("inlined");
        assert!(!offline.contains("https://"), "no external URL left");
        assert!(offline.len() > 1_000_000);
        assert!(
            inline_charts("<html>no charts</html>").is_err(),
            "a changed template is an error"
        );
    }
}
