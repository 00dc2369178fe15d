//! The checked-in state diagrams must match the transition tables.
//! Regenerate with `UPDATE_DIAGRAMS=1 cargo test -p provision-fsm --test diagrams`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use provision_fsm::diagram::{host_mermaid, node_mermaid};

fn check(file: &str, generated: String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("diagrams")
        .join(file);
    if std::env::var_os("UPDATE_DIAGRAMS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        on_disk, generated,
        "{file} is out of date: run UPDATE_DIAGRAMS=1 cargo test -p provision-fsm --test diagrams"
    );
}

#[test]
fn host_diagram_is_up_to_date() {
    check("host.mmd", host_mermaid());
}

#[test]
fn node_diagram_is_up_to_date() {
    check("node.mmd", node_mermaid());
}
