// Plugin version, commit and release date for gst-inspect (from git when available).
fn main() {
    gst_plugin_version_helper::info()
}
