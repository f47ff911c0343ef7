//! ZooKeeper's AdminServer: `GET /commands` lists the commands, `GET
//! /commands/<name>` answers one as JSON (with `command` and `error`
//! fields), built from the same numbers as the four-letter words.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use crate::{fourlw, Server};

/// (primary name, aliases, the four-letter word it mirrors).
const COMMANDS: &[(&str, &[&str], &str)] = &[
    ("ruok", &[], "ruok"),
    ("server_stats", &["srvr"], "srvr"),
    ("stats", &["stat"], "stat"),
    ("monitor", &["mntr"], "mntr"),
    ("configuration", &["conf", "config"], "conf"),
    ("environment", &["env", "envi"], "envi"),
    ("is_read_only", &["isro"], "isro"),
    ("connections", &["cons"], "cons"),
    ("watch_summary", &["wchs"], "wchs"),
    ("watches", &["wchc"], "wchc"),
    ("watches_by_path", &["wchp"], "wchp"),
    ("dump", &[], "dump"),
    ("connection_stat_reset", &["crst"], "crst"),
    ("stat_reset", &["srst"], "srst"),
];

pub(crate) async fn serve(srv: Arc<Server>, listener: TcpListener) {
    let app = Router::new()
        .route("/commands", get(list))
        .route("/commands/{name}", get(command))
        .with_state(srv);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("zookeeper AdminServer: {e}");
    }
}

async fn list() -> Json<Value> {
    let names: Vec<&str> = COMMANDS.iter().map(|c| c.0).collect();
    Json(json!({ "command": "commands", "error": null, "commands": names }))
}

fn number_or_string(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return json!(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        return json!(f);
    }
    json!(v)
}

/// `key<sep>value` lines as a JSON object.
fn pairs(text: &str, sep: char, strip: &str) -> Map<String, Value> {
    text.lines()
        .filter_map(|l| l.split_once(sep))
        .map(|(k, v)| {
            (
                k.trim().trim_start_matches(strip).to_string(),
                number_or_string(v.trim()),
            )
        })
        .collect()
}

async fn command(State(srv): State<Arc<Server>>, Path(name): Path<String>) -> Json<Value> {
    let Some((primary, _, word)) = COMMANDS
        .iter()
        .find(|(p, aliases, _)| *p == name || aliases.contains(&name.as_str()))
    else {
        return Json(json!({ "command": name, "error": "Command not found" }));
    };
    // The AdminServer is not subject to the 4lw whitelist.
    let text = fourlw::render(&srv, word);
    let mut out = match *word {
        "ruok" => Map::new(),
        // Commands.ConsCommand: the plain and the secure factory's lists.
        "cons" => {
            let mut m = Map::new();
            m.insert("output".into(), json!(text));
            m.insert(
                "secure_output".into(),
                json!(fourlw::render_port(&srv, word, Some(true))),
            );
            m
        }
        "mntr" => pairs(&text, '\t', "zk_"),
        "srvr" | "stat" => {
            let mut m = Map::new();
            let stats = pairs(&text, ':', "");
            m.insert("version".into(), json!(fourlw::VERSION));
            m.insert("read_only".into(), json!(srv.node.leader().is_none()));
            m.insert("server_stats".into(), Value::Object(stats));
            m
        }
        "conf" | "envi" => pairs(&text, '=', ""),
        "isro" => {
            let mut m = Map::new();
            m.insert("read_only".into(), json!(text.trim() == "ro"));
            m
        }
        "wchs" => {
            let mut m = Map::new();
            let nums: Vec<i64> = text
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .filter_map(|s| s.parse().ok())
                .collect();
            m.insert(
                "num_connections".into(),
                json!(nums.first().copied().unwrap_or(0)),
            );
            m.insert("num_paths".into(), json!(nums.get(1).copied().unwrap_or(0)));
            m.insert(
                "num_total_watches".into(),
                json!(nums.get(2).copied().unwrap_or(0)),
            );
            m
        }
        _ => {
            let mut m = Map::new();
            m.insert("output".into(), json!(text));
            m
        }
    };
    out.insert("command".into(), json!(primary));
    out.insert("error".into(), Value::Null);
    Json(Value::Object(out))
}
