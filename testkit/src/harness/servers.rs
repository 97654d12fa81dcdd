//! The stock servers: for each, how to start one on a loopback port, with the library or
//! without, and what the harness expects of it. Each is installed at a pinned version by the
//! project's own files (.ci/install: apt packages, tests/requirements.txt, tests/node).
//! A missing one fails under CI=true and is skipped with a message elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Restart, Spec, HOST};
use crate as common;
use crate::TempDir;

const PIP_HINT: &str = "python3 -m pip install -r tests/requirements.txt (or run .ci/install)";

fn apps() -> PathBuf {
    common::repo_root().join("tests/apps")
}

fn examples() -> PathBuf {
    common::repo_root().join("examples")
}

/// The first non-empty line a command prints (stdout, then stderr).
fn first_line(cmd: &mut Command) -> String {
    let out = common::run(cmd, Duration::from_secs(60));
    let text = [out.stdout, out.stderr].concat();
    String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("?")
        .to_string()
}

fn python_version() -> String {
    first_line(
        Command::new(common::python())
            .args(["-c", "import platform; print(platform.python_version())"]),
    )
}

/// The installed version of a Python distribution; None (a skip, or a failure under CI)
/// when it is not installed.
fn python_dist(dist: &str) -> Option<String> {
    let out = common::run(
        Command::new(common::python()).args([
            "-c",
            &format!("import importlib.metadata as m; print(m.version({dist:?}))"),
        ]),
        Duration::from_secs(60),
    );
    if out.status.success() {
        return Some(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    assert!(
        !common::in_ci(),
        "the Python package {dist} is required under CI=true: {PIP_HINT}"
    );
    common::skip(&format!(
        "the Python package {dist} is not installed; install it with: {PIP_HINT}"
    ));
    None
}

/// A Python interpreter command: the real interpreter, no bytecode files in the tree.
fn python(preload: bool) -> Command {
    let mut c = common::command(common::python(), preload);
    c.env("PYTHONDONTWRITEBYTECODE", "1");
    c
}

fn nodemon_version() -> String {
    let p = common::repo_root().join("tests/node/node_modules/nodemon/package.json");
    let text = std::fs::read_to_string(p).unwrap_or_default();
    text.split("\"version\"")
        .nth(1)
        .and_then(|r| r.split('"').nth(1))
        .unwrap_or("?")
        .to_string()
}

pub fn socketserver() -> Option<Spec> {
    let app = examples().join("python/app.py");
    Some(Spec {
        order: 0,
        name: format!(
            "Python {} socketserver.TCPServer (examples/python/app.py)",
            python_version()
        ),
        own_reuseaddr: false,
        restart: Restart::Harness { workers: false },
        launch: Box::new(move |port, preload| {
            let mut c = python(preload);
            c.arg(&app).env("PORT", port.to_string()).env("HOST", HOST);
            c
        }),
        _files: None,
    })
}

pub fn http_server() -> Option<Spec> {
    let dir = apps();
    Some(Spec {
        order: 1,
        name: format!("Python {} `-m http.server`", python_version()),
        own_reuseaddr: true,
        restart: Restart::Harness { workers: false },
        launch: Box::new(move |port, preload| {
            let mut c = python(preload);
            c.args(["-m", "http.server", "--bind", HOST, "--directory"])
                .arg(&dir)
                .arg(port.to_string());
            c
        }),
        _files: None,
    })
}

fn flask_spec(order: usize, reload: bool) -> Option<Spec> {
    let flask = python_dist("flask")?;
    let werkzeug = python_dist("werkzeug")?;
    Some(Spec {
        order,
        name: if reload {
            format!("Flask {flask} dev server, `--reload` (reloader + serving child)")
        } else {
            format!("Flask {flask} dev server (`flask run`, Werkzeug {werkzeug})")
        },
        own_reuseaddr: true,
        restart: if reload {
            Restart::MasterKilled
        } else {
            Restart::Harness { workers: false }
        },
        launch: Box::new(move |port, preload| {
            let mut c = python(preload);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("FLASK_") {
                    c.env_remove(k);
                }
            }
            c.current_dir(apps())
                .args(["-m", "flask", "--app", "flask_app", "run", "--host", HOST])
                .args(["--port", &port.to_string(), "--no-debugger"])
                .arg(if reload { "--reload" } else { "--no-reload" });
            c
        }),
        _files: None,
    })
}

pub fn flask() -> Option<Spec> {
    flask_spec(2, false)
}

pub fn flask_reloader() -> Option<Spec> {
    flask_spec(14, true)
}

fn uvicorn_spec(order: usize, workers: bool) -> Option<Spec> {
    let v = python_dist("uvicorn")?;
    Some(Spec {
        order,
        name: if workers {
            format!("uvicorn {v} --workers 2")
        } else {
            format!("uvicorn {v}")
        },
        own_reuseaddr: true,
        restart: if workers {
            Restart::MasterKilled
        } else {
            Restart::Harness { workers: false }
        },
        launch: Box::new(move |port, preload| {
            let mut c = python(preload);
            c.args(["-m", "uvicorn", "--app-dir"]).arg(apps()).args([
                "--host",
                HOST,
                "--port",
                &port.to_string(),
                "--no-access-log",
            ]);
            if workers {
                c.args(["--workers", "2"]);
            }
            c.arg("asgi_app:app");
            c
        }),
        _files: None,
    })
}

pub fn uvicorn() -> Option<Spec> {
    uvicorn_spec(3, false)
}

pub fn uvicorn_workers() -> Option<Spec> {
    uvicorn_spec(12, true)
}

fn gunicorn_spec(order: usize, restart: Restart) -> Option<Spec> {
    let v = python_dist("gunicorn")?;
    Some(Spec {
        order,
        name: format!("gunicorn {v}, 2 sync workers"),
        own_reuseaddr: true,
        restart,
        launch: Box::new(move |port, preload| {
            let mut c = python(preload);
            c.env_remove("GUNICORN_CMD_ARGS")
                .args(["-m", "gunicorn", "--chdir"])
                .arg(apps())
                .args(["--workers", "2", "--bind", &format!("{HOST}:{port}")])
                .arg("wsgi_app:app");
            c
        }),
        _files: None,
    })
}

pub fn gunicorn() -> Option<Spec> {
    gunicorn_spec(4, Restart::Harness { workers: true })
}

pub fn gunicorn_workers() -> Option<Spec> {
    gunicorn_spec(11, Restart::MasterKilled)
}

pub fn node_http() -> Option<Spec> {
    let node = common::require("node", "apt-get install nodejs")?;
    let app = examples().join("node/app.js");
    Some(Spec {
        order: 5,
        name: format!(
            "Node {} http.createServer (examples/node/app.js)",
            first_line(Command::new(&node).arg("--version"))
        ),
        own_reuseaddr: true,
        restart: Restart::Harness { workers: false },
        launch: Box::new(move |port, preload| {
            let mut c = common::command(&node, preload);
            // No HOST: the app listens on every address (`::`), as the report's did.
            c.arg(&app).env("PORT", port.to_string()).env_remove("HOST");
            c
        }),
        _files: None,
    })
}

pub fn socat() -> Option<Spec> {
    let socat = common::require("socat", "apt-get install socat")?;
    let out = common::run(Command::new(&socat).arg("-V"), Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text
        .lines()
        .find_map(|l| l.split_once("socat version "))
        .and_then(|(_, v)| v.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    let reply = apps().join("socat-reply.sh");
    Some(Spec {
        order: 6,
        name: format!("socat {version} TCP-LISTEN,fork (no reuseaddr)"),
        own_reuseaddr: false,
        restart: Restart::Harness { workers: false },
        launch: Box::new(move |port, preload| {
            let mut c = common::command(&socat, preload);
            c.arg(format!("TCP-LISTEN:{port},bind={HOST},fork"))
                .arg(format!("EXEC:{}", reply.display()));
            c
        }),
        _files: None,
    })
}

pub fn legacy_c() -> Option<Spec> {
    let bin = common::build_c("examples/legacy-c/server.c", "legacy-c-server", "cc")?;
    let cc = first_line(Command::new("cc").arg("--version"));
    let cc = cc.rsplit(' ').next().unwrap_or("?");
    Some(Spec {
        order: 7,
        name: format!("legacy C server (examples/legacy-c/server.c, cc {cc})"),
        own_reuseaddr: false,
        restart: Restart::Harness { workers: false },
        launch: Box::new(move |port, preload| {
            let mut c = common::command(&bin, preload);
            c.env("PORT", port.to_string()).env("HOST", HOST);
            c
        }),
        _files: None,
    })
}

/// An nginx configuration for `port` in its own prefix folder under `dir`: master and two
/// workers, the error log on stderr, every answer naming the worker's PID.
fn nginx_conf(dir: &Path, port: u16) -> PathBuf {
    let prefix = dir.join(format!("port-{port}"));
    let tmp = prefix.join("tmp");
    std::fs::create_dir_all(&tmp).expect("nginx prefix");
    let conf = prefix.join("nginx.conf");
    let tmp = tmp.display();
    let text = format!(
        "daemon off;\n\
         master_process on;\n\
         worker_processes 2;\n\
         error_log stderr notice;\n\
         pid {pid};\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {tmp};\n\
         \x20   proxy_temp_path {tmp};\n\
         \x20   fastcgi_temp_path {tmp};\n\
         \x20   uwsgi_temp_path {tmp};\n\
         \x20   scgi_temp_path {tmp};\n\
         \x20   server {{\n\
         \x20       listen {HOST}:{port};\n\
         \x20       location / {{ default_type text/plain; return 200 \"ok pid=$pid\\n\"; }}\n\
         \x20   }}\n\
         }}\n",
        pid = prefix.join("nginx.pid").display(),
    );
    std::fs::write(&conf, text).expect("nginx.conf");
    conf
}

fn nginx_spec(order: usize, restart: Restart, tag: &str) -> Option<Spec> {
    let nginx = common::require("nginx", "apt-get install nginx-light")?;
    let version = first_line(Command::new(&nginx).arg("-v"));
    let version = version.rsplit('/').next().unwrap_or(&version).to_string();
    let dir = TempDir::new(tag);
    let base = dir.path().to_path_buf();
    Some(Spec {
        order,
        name: format!("nginx {version}, master + 2 workers"),
        own_reuseaddr: true,
        restart,
        launch: Box::new(move |port, preload| {
            let conf = nginx_conf(&base, port);
            let prefix = conf.parent().expect("prefix").to_path_buf();
            let mut c = common::command(&nginx, preload);
            c.arg("-p")
                .arg(&prefix)
                .args(["-e", "stderr", "-c"])
                .arg(&conf);
            c
        }),
        _files: Some(dir),
    })
}

pub fn nginx() -> Option<Spec> {
    nginx_spec(8, Restart::Harness { workers: true }, "nginx")
}

pub fn nginx_workers() -> Option<Spec> {
    nginx_spec(13, Restart::MasterKilled, "nginx-workers")
}

/// Two folders, without the library ([0]) and with it ([1]), each with copies of `files` from
/// examples/`example`: the harness changes the watched file in one of them at a time.
fn example_copies(tag: &str, example: &str, files: &[&str]) -> (TempDir, [PathBuf; 2]) {
    let dir = TempDir::new(tag);
    let dirs = [dir.path().join("without"), dir.path().join("with")];
    for d in &dirs {
        std::fs::create_dir_all(d).expect("example folder");
        for f in files {
            std::fs::copy(examples().join(example).join(f), d.join(f)).expect("copy example");
        }
    }
    (dir, dirs)
}

/// nodemon restarting examples/node/app.js with examples/node/nodemon.json.
pub fn nodemon_node_app() -> Option<Spec> {
    let nodemon = common::nodemon()?;
    let (dir, dirs) = example_copies("nodemon-node", "node", &["app.js", "nodemon.json"]);
    let watched = dirs.clone().map(|d| d.join("app.js"));
    Some(Spec {
        order: 9,
        name: format!(
            "nodemon {} restarting examples/node/app.js (nodemon.json)",
            nodemon_version()
        ),
        own_reuseaddr: true,
        restart: Restart::Nodemon {
            watched,
            comment: "//",
        },
        launch: Box::new(move |port, preload| {
            let mut c = common::command(&nodemon, preload);
            c.current_dir(&dirs[preload as usize])
                .env("PORT", port.to_string())
                .env_remove("HOST");
            c
        }),
        _files: Some(dir),
    })
}

/// nodemon restarting examples/python/app.py, with the command line its README gives (the
/// real interpreter's path for `python3`, as everywhere in the tests).
pub fn nodemon_python_app() -> Option<Spec> {
    let nodemon = common::nodemon()?;
    let (dir, dirs) = example_copies("nodemon-python", "python", &["app.py"]);
    let watched = dirs.clone().map(|d| d.join("app.py"));
    let py = common::python();
    Some(Spec {
        order: 10,
        name: format!(
            "nodemon {} restarting examples/python/app.py",
            nodemon_version()
        ),
        own_reuseaddr: false,
        restart: Restart::Nodemon {
            watched,
            comment: "#",
        },
        launch: Box::new(move |port, preload| {
            let mut c = common::command(&nodemon, preload);
            c.current_dir(&dirs[preload as usize])
                .args(["--watch", "app.py", "--signal", "SIGTERM", "--exec"])
                .arg(format!("{} app.py", py.display()))
                .env("PORT", port.to_string())
                .env("HOST", HOST)
                .env("PYTHONDONTWRITEBYTECODE", "1");
            c
        }),
        _files: Some(dir),
    })
}
