//! What a server is (a `Spec`), and how it is restarted.

use super::*;

pub enum Restart {
    /// The harness stops and starts it. Cycles alternate SIGTERM and SIGKILL. With
    /// `workers` (a master and worker processes), SIGTERM goes to the master (its own
    /// graceful stop) and SIGKILL to the whole process group, as a service manager does.
    Harness { workers: bool },
    /// nodemon restarts the app when the watched file changes; `comment` starts a line the
    /// harness appends to it.
    Nodemon {
        /// The file in the folder of the instance without the library, and with it: two
        /// folders, so that a change restarts only the one nodemon.
        watched: [PathBuf; 2],
        comment: &'static str,
    },
    /// Only the master is SIGKILLed, as `kill -9 MASTER` does; its workers keep the
    /// listening socket.
    MasterKilled,
}

pub(crate) type Launch = Box<dyn Fn(u16, bool) -> Command + Send + Sync>;

pub struct Spec {
    /// Its place in the table.
    pub order: usize,
    pub name: String,
    pub own_reuseaddr: bool,
    pub restart: Restart,
    /// The command for a fresh instance on `port`, with the library preloaded or not.
    pub launch: Launch,
    /// Files it needs (removed with the spec).
    pub _files: Option<TempDir>,
}

impl Spec {
    pub fn launch(&self, port: u16, preload: bool) -> Instance {
        Instance::launch(&self.name, (self.launch)(port, preload))
    }

    /// A fresh instance on `port` that answers, or a panic saying why not.
    pub fn start_ready(&self, port: u16, preload: bool) -> Instance {
        let mut inst = self.launch(port, preload);
        if let Err(why) = wait_ready(&mut inst, port, START_TIMEOUT, Accept::OwnGroup, None) {
            let log = inst.finish();
            panic!(
                "{} did not start on fresh port {port} (library {}): {why}; output:\n{log}",
                self.name,
                if preload { "on" } else { "off" }
            );
        }
        inst
    }
}
