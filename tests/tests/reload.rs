//! `Manager::reload` on the embedded local mixnet: edits made to identity
//! folders on disk are applied to exactly the identities they touch.

use std::path::Path;
use std::time::Duration;

use nymd::manager::{InitRequest, ManagerEvent, ReloadReport, RunState};
use nymd_tests::{free_port, TestDaemon, WAIT};

/// Rewrite one identity's `config.toml` with `edit`.
fn edit_config(state: &Path, id: &str, edit: impl FnOnce(&mut String)) {
    let path = state.join("identities").join(id).join("config.toml");
    let mut text = std::fs::read_to_string(&path).expect("read config.toml");
    edit(&mut text);
    std::fs::write(&path, text).expect("write config.toml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_each_folder_change_and_leaves_the_rest_alone() {
    let net = nymd_tests::fast_localnet().await;
    let state = tempfile::tempdir().expect("tmp");
    let d = TestDaemon::start(state.path(), &net.api_url(), free_port());
    for id in ["alice", "bob", "carol", "erin"] {
        d.init(id).await;
    }
    for id in ["alice", "bob", "carol", "erin"] {
        d.wait_state(id, RunState::Running).await;
    }

    // "dave" is made by another daemon and moved in, enabled.
    let other_state = tempfile::tempdir().expect("tmp");
    let other = TestDaemon::start(other_state.path(), &net.api_url(), free_port());
    other
        .manager
        .init(InitRequest {
            id: "dave".into(),
            no_start: true,
            ..InitRequest::default()
        })
        .await
        .expect("init dave");
    other.stop().await;
    edit_config(other_state.path(), "dave", |t| {
        *t = t.replace("enabled = false", "enabled = true");
    });
    std::fs::rename(
        other_state.path().join("identities/dave"),
        state.path().join("identities/dave"),
    )
    .expect("move dave in");

    // bob: a traffic setting; carol: disabled; erin: folder gone; junk: an
    // unreadable folder; alice: untouched.
    edit_config(state.path(), "bob", |t| {
        *t = t.replace("[traffic]", "[traffic]\nloop_cover_average_delay_ms = 150");
    });
    edit_config(state.path(), "carol", |t| {
        *t = t.replace("enabled = true", "enabled = false");
    });
    let trash = tempfile::tempdir().expect("tmp");
    std::fs::rename(
        state.path().join("identities/erin"),
        trash.path().join("erin"),
    )
    .expect("move erin out");
    std::fs::create_dir(state.path().join("identities/junk")).expect("junk");

    let alice_before = d.manager.info("alice").expect("alice");
    let mut events = d.manager.subscribe();
    let report = tokio::time::timeout(WAIT, d.manager.reload())
        .await
        .expect("reload in time")
        .expect("reload");
    let ReloadReport {
        added,
        removed,
        restarted,
        started,
        stopped,
        updated,
        unchanged,
        failed,
    } = report.clone();
    assert_eq!(added, ["dave"], "{report:?}");
    assert_eq!(removed, ["erin"], "{report:?}");
    assert_eq!(restarted, ["bob"], "{report:?}");
    assert_eq!(stopped, ["carol"], "{report:?}");
    assert!(started.is_empty() && updated.is_empty(), "{report:?}");
    assert_eq!(unchanged, ["alice"], "{report:?}");
    assert_eq!(failed.len(), 1, "{report:?}");
    assert_eq!(failed[0].0, "junk");
    assert_eq!(
        report.summary(),
        "1 added, 1 removed, 1 restarted, 1 stopped, 1 failed to load"
    );

    d.wait_state("bob", RunState::Running).await;
    d.wait_state("dave", RunState::Running).await;
    d.wait_state("carol", RunState::Stopped).await;
    assert!(d.manager.info("erin").is_err(), "erin is forgotten");
    assert!(d.manager.broken().iter().any(|b| b.id == "junk"));
    let bob = d.manager.info("bob").expect("bob");
    assert!(!bob.enabled || bob.state == RunState::Running);

    // alice: no state change at all, uptime went on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut touched = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let ManagerEvent::State { id, state } = ev {
            touched.push((id, state));
        }
    }
    assert!(
        touched.iter().all(|(id, _)| id != "alice"),
        "alice untouched: {touched:?}"
    );
    assert!(
        touched
            .iter()
            .any(|(id, s)| id == "bob" && *s == RunState::Stopped),
        "bob restarted: {touched:?}"
    );
    let alice_after = d.manager.info("alice").expect("alice");
    assert_eq!(alice_after.state, RunState::Running);
    assert!(
        alice_after.uptime.expect("uptime") > alice_before.uptime.expect("uptime"),
        "alice kept running"
    );

    // A second reload with nothing changed touches nothing.
    let again = d.manager.reload().await.expect("reload");
    assert_eq!(again.unchanged, ["alice", "bob", "carol", "dave"]);
    assert_eq!(again.summary(), "1 failed to load");
    d.stop().await;
    net.shutdown().await;
}
