//! Property tests on hostile input: any name the path rules accept stays inside the layer, and
//! damaged tars are errors, never panics.

mod common;

use std::io::Cursor;

use proptest::prelude::*;
use wclayer::{parse_entry_name, write_layer_from_tar, EntryName, RecordingLayerWriter};

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just(String::new()),
        Just("C:".to_string()),
        Just("a:b".to_string()),
        Just("x:$DATA".to_string()),
        "[a-zA-Z0-9 ._\\-]{1,8}",
        "[a-z]{1,3}(:[a-z]{1,3}){0,2}",
    ]
}

proptest! {
    #[test]
    fn accepted_names_stay_inside_the_layer(
        lead in prop_oneof![Just(""), Just("/"), Just("./"), Just("\\")],
        comps in proptest::collection::vec(component(), 1..6),
        sep in prop_oneof![Just("/"), Just("\\")],
    ) {
        let name = format!("{lead}{}", comps.join(sep));
        if let Ok(parsed) = parse_entry_name(&name) {
            let path = match parsed {
                EntryName::Path(p) => p,
                EntryName::Stream { file, stream } => {
                    prop_assert!(!stream.is_empty() && !stream.contains(['\\', ':']));
                    file
                }
            };
            prop_assert!(!path.is_empty());
            for c in path.split('\\') {
                prop_assert!(!c.is_empty() && c != "." && c != "..", "{name:?} -> {path:?}");
                prop_assert!(!c.contains([':', '/', '\0']), "{name:?} -> {path:?}");
            }
        }
    }

    #[test]
    fn damaged_tars_are_errors_not_panics(
        flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..12),
        cut in proptest::option::of(0usize..4096),
    ) {
        let mut t = common::TarBuilder::new();
        t.dir("Files", &[("MSWINDOWS.rawsd", "AQAEgA==".into())]);
        t.file("Files/a.txt", &[("MSWINDOWS.xattr.k", "AQI=".into()), ("mtime", "1.5".into())], b"hello world");
        t.file("Files/a.txt:s", &[], b"ads");
        t.entry("Files/l", tar::EntryType::Link, &[], "Files/a.txt", b"");
        t.entry("Files/s", tar::EntryType::Symlink, &[("MSWINDOWS.mountpoint", "1".into())], "C:/x", b"");
        let mut tar = t.finish();
        for (at, byte) in flips {
            if let Some(b) = tar.get_mut(at) {
                *b = byte;
            }
        }
        if let Some(c) = cut {
            tar.truncate(c.min(tar.len()));
        }
        let mut w = RecordingLayerWriter::new();
        let _ = write_layer_from_tar(Cursor::new(tar), &mut w, &mut |_| {});
    }
}
