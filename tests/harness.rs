//! The rapid-restart harness (issue 3): stock servers, killed with TIME_WAIT sockets on their
//! port and started again at once, with libreuse and without it (the control), measured.
//!
//! One test per server, so cargo runs them side by side, each on ports of its own. Each prints
//! its row of the table; the table of every row so far is written to target/harness-table.md,
//! and the last test to finish prints the whole table.
//!
//!   cargo test --release --test harness -- socketserver --nocapture
//!
//! REUSE_HARNESS_CYCLES sets the restart cycles per server (default 20).

use reuse_testkit::harness as harness_support;

use harness_support::{outliving_case, restart_case, servers};

#[test]
fn socketserver() {
    restart_case(servers::socketserver);
}

#[test]
fn http_server() {
    restart_case(servers::http_server);
}

#[test]
fn flask() {
    restart_case(servers::flask);
}

#[test]
fn uvicorn() {
    restart_case(servers::uvicorn);
}

#[test]
fn gunicorn() {
    restart_case(servers::gunicorn);
}

#[test]
fn node_http() {
    restart_case(servers::node_http);
}

#[test]
fn socat() {
    restart_case(servers::socat);
}

#[test]
fn legacy_c() {
    restart_case(servers::legacy_c);
}

#[test]
fn nginx() {
    restart_case(servers::nginx);
}

#[test]
fn nodemon_node_app() {
    restart_case(servers::nodemon_node_app);
}

#[test]
fn nodemon_python_app() {
    restart_case(servers::nodemon_python_app);
}

#[test]
fn outliving_gunicorn_workers() {
    outliving_case(servers::gunicorn_workers);
}

#[test]
fn outliving_uvicorn_workers() {
    outliving_case(servers::uvicorn_workers);
}

#[test]
fn outliving_nginx_workers() {
    outliving_case(servers::nginx_workers);
}

#[test]
fn outliving_flask_reloader() {
    outliving_case(servers::flask_reloader);
}

/// The commands of examples/*/README.md, run as written under `reuse run` and LD_PRELOAD.
#[test]
fn examples_readme_commands() {
    harness_support::examples::run_all();
}
