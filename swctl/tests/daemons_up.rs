//! The workspace's "done when": swrtp and swbd start as real processes, list
//! their gRPC services through server reflection with a real client, and
//! `grpc.health.v1` says SERVING on every server.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use common::{Daemon, eventually, free_port, start_swbd, swctl_env};
use std::os::unix::fs::PermissionsExt;
use swctl::connect::{Host, connect};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn services(host: &Host) -> Vec<String> {
    let channel = connect(host, "daemon").await.expect("connect");
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection call")
        .into_inner();
    let resp = stream
        .message()
        .await
        .expect("reflection reply")
        .expect("one reply");
    match resp.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

async fn health(host: &Host, service: &str) -> ServingStatus {
    let channel = connect(host, "daemon").await.expect("connect");
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .expect("health check")
        .into_inner();
    ServingStatus::try_from(resp.status).expect("known status")
}

async fn wait_up(host: &Host) {
    eventually(30, &format!("{host} to accept connections"), || async {
        connect(host, "daemon").await.ok().map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn both_daemons_serve_reflection_and_health() {
    let dir = tempdir();
    let media_port = free_port();
    let media = format!("tcp://127.0.0.1:{media_port}");
    let swrtp_admin = dir.join("swrtp.sock");
    let swbd_admin = dir.join("swbd.sock");
    let sip_port = free_port();

    let swrtp = Daemon::start(
        "swrtp",
        &[
            "--listen",
            &media,
            "--admin",
            &format!("unix://{}", swrtp_admin.display()),
            "--rtp-ports",
            "31000-31099",
        ],
    );
    let cfg = dir.join("swbd.yaml");
    std::fs::write(
        &cfg,
        format!(
            "auth: {{ enabled: false }}\nmedia: {{ nodes: [{{ name: rtp-a, address: \"{media}\" }}] }}\n"
        ),
    )
    .expect("write config");
    let swbd = Daemon::start(
        "swbd",
        &[
            "--config",
            cfg.to_str().expect("utf-8 path"),
            "--listen",
            &format!("udp:127.0.0.1:{sip_port}"),
            "--admin-socket",
            swbd_admin.to_str().expect("utf-8 path"),
        ],
    );

    let media_host: Host = media.parse().expect("host");
    let swrtp_admin_host = Host::Unix(swrtp_admin.clone());
    let swbd_admin_host = Host::Unix(swbd_admin.clone());
    for h in [&media_host, &swrtp_admin_host, &swbd_admin_host] {
        wait_up(h).await;
    }

    let media_services = services(&media_host).await;
    assert!(
        media_services.contains(&"switchboard.media.v1.MediaService".to_string()),
        "{media_services:?}"
    );
    let swrtp_admin_services = services(&swrtp_admin_host).await;
    assert!(
        swrtp_admin_services.contains(&"switchboard.admin.v1.MediaAdmin".to_string()),
        "{swrtp_admin_services:?}"
    );
    let swbd_services = services(&swbd_admin_host).await;
    assert!(
        swbd_services.contains(&"switchboard.admin.v1.SignalingAdmin".to_string()),
        "{swbd_services:?}"
    );
    for list in [&media_services, &swrtp_admin_services, &swbd_services] {
        assert!(
            list.contains(&"grpc.health.v1.Health".to_string()),
            "{list:?}"
        );
        assert!(
            list.contains(&"grpc.reflection.v1.ServerReflection".to_string()),
            "{list:?}"
        );
    }

    for (host, service) in [
        (&media_host, "switchboard.media.v1.MediaService"),
        (&swrtp_admin_host, "switchboard.admin.v1.MediaAdmin"),
        (&swbd_admin_host, "switchboard.admin.v1.SignalingAdmin"),
        (&swbd_admin_host, ""),
    ] {
        assert_eq!(
            health(host, service).await,
            ServingStatus::Serving,
            "{host} {service:?}"
        );
    }

    // Graceful shutdown on SIGTERM: clean exit and the admin sockets are gone.
    assert!(swbd.stop().success());
    assert!(swrtp.stop().success());
    assert!(!swbd_admin.exists(), "swbd removed its socket");
    assert!(!swrtp_admin.exists(), "swrtp removed its socket");
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "swctl-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("tempdir");
    dir
}

/// `swctl media sessions` on a box where swbd runs but swrtp does not used
/// to exit 2 (usage) with "no swrtp answered": a daemon that is not
/// reachable is exit 3, and the message names swrtp and where it looked.
#[test]
fn media_sessions_without_swrtp_exits_3_naming_swrtp() {
    let dir = common::tempdir("no-swrtp");
    let xdg = dir.join("xdg");
    let runtime = xdg.join("switchboard");
    std::fs::create_dir_all(&runtime).expect("mkdir");
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let _swbd = start_swbd(&dir, &runtime.join("swbd.sock"), "pbx-no-swrtp");
    let env = [
        ("XDG_RUNTIME_DIR", xdg.to_str().expect("utf-8")),
        ("XDG_CONFIG_HOME", dir.to_str().expect("utf-8")),
    ];
    let (code, _, err) = swctl_env(&["media", "sessions"], &env);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach swrtp"), "{err}");
    assert!(err.contains("swrtp.sock"), "{err}");
}
