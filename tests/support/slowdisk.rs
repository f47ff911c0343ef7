//! A slow disk for chosen processes: an `LD_PRELOAD` shim, compiled by the
//! test with the system C compiler (scripts/test.sh installs clang), that
//! delays every `fsync`/`fdatasync` of a process while a file named after
//! its pid holds a delay in milliseconds. RocksDB's synced WAL writes (the
//! Raft log's group commit) go through these calls.

use std::path::{Path, PathBuf};
use std::process::Command;

const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void slow(void) {
    const char *dir = getenv("FAULT_SLOW_FSYNC_DIR");
    if (!dir) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%d", dir, (int)getpid());
    FILE *f = fopen(path, "r");
    if (!f) return;
    long ms = 0;
    if (fscanf(f, "%ld", &ms) != 1) ms = 0;
    fclose(f);
    if (ms > 0) usleep((useconds_t)(ms * 1000));
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow();
    return real(fd);
}
"#;

pub struct SlowDisk {
    lib: PathBuf,
    dir: PathBuf,
}

impl SlowDisk {
    /// Build the shim under `dir`.
    pub fn build(dir: &Path) -> Result<SlowDisk, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let src = dir.join("slowfsync.c");
        let lib = dir.join("libslowfsync.so");
        std::fs::write(&src, SHIM).map_err(|e| e.to_string())?;
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&lib)
            .arg(&src)
            .arg("-ldl")
            .output()
            .map_err(|e| format!("cc: {e} (scripts/test.sh installs clang)"))?;
        if !out.status.success() {
            return Err(format!(
                "cc failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(SlowDisk {
            lib,
            dir: dir.to_path_buf(),
        })
    }

    /// The environment a process needs to have a slow disk on demand.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.lib.display().to_string()),
            (
                "FAULT_SLOW_FSYNC_DIR".into(),
                self.dir.display().to_string(),
            ),
        ]
    }

    /// Delay every fsync of process `pid` by `ms` (0: no delay).
    pub fn set(&self, pid: u32, ms: u64) {
        let path = self.dir.join(pid.to_string());
        if ms == 0 {
            let _ = std::fs::remove_file(path);
        } else {
            let _ = std::fs::write(path, ms.to_string());
        }
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
