//! `swctl man` refers to a page per subcommand (`swctl-calls(1)`, ...);
//! `swctl man --dir DIR` must write every page any page refers to, so an
//! installed swctl(1) never names a page that does not exist (issue #16).
#![allow(clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::collections::BTreeSet;

fn references(roff: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for (i, _) in roff.match_indices("swctl\\-") {
        let rest = &roff[i..];
        if let Some(end) = rest.find("(1)") {
            let name = &rest[..end];
            if name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '\\')
            {
                refs.insert(name.replace("\\-", "-"));
            }
        }
    }
    refs
}

#[test]
fn every_page_a_man_page_names_is_written() {
    let dir = common::tempdir("man");
    let (code, out, err) = common::swctl(&["man", "--dir", dir.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, main_page, err) = common::swctl(&["man"]);
    assert_eq!(code, 0, "{err}");
    let mut named = references(&main_page);
    assert!(
        named.contains("swctl-calls"),
        "swctl(1) lists its subcommands"
    );
    for entry in std::fs::read_dir(&dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read page");
        named.extend(references(&text));
    }
    assert!(dir.join("swctl.1").exists());
    for name in &named {
        assert!(
            dir.join(format!("{name}.1")).exists(),
            "{name}(1) is referred to but was not written"
        );
    }
    assert!(
        !named.contains("swctl-help"),
        "no page for the help subcommand"
    );
}
