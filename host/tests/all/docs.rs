//! Every `weir ...` command the README and docs show parses with the CLI as
//! it is today, so a renamed flag or subcommand cannot leave the docs behind.

use std::path::PathBuf;

use clap::Parser as _;
use weir::cli::Cli;

/// Code-block lines of the README and docs/*.md that run `weir`.
fn documented_commands() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut in_code = false;
        let mut continued = String::new();
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if !in_code {
                continue;
            }
            // Join `\`-continued lines; drop comments and a trailing `&`.
            let line = line.split(" #").next().unwrap_or_default().trim();
            if let Some(head) = line.strip_suffix('\\') {
                continued.push_str(head);
                continue;
            }
            let line = std::mem::take(&mut continued) + line;
            let line = line.trim_start_matches("$ ").trim_end_matches(" &");
            if !line.starts_with("weir ") {
                continue;
            }
            // `weir status | weir handlers ls`: alternatives on one line.
            for command in line.split(" | ") {
                let command = command.trim();
                let is_command = command
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
                if command.starts_with("weir ") && is_command {
                    found.push((file.display().to_string(), command.to_string()));
                }
            }
        }
    }
    found
}

/// The argument vector of a documented command: optional `[...]` parts
/// kept, the first of `a|b` alternatives taken, placeholders for numbers
/// filled in.
fn argv(command: &str) -> Vec<String> {
    command
        .split_whitespace()
        .map(|w| w.trim_matches(['[', ']']))
        .filter(|w| !w.is_empty() && *w != "...")
        .map(|w| w.split('|').next().unwrap_or(w))
        .map(|w| match w {
            "P" | "N" | "REV" | "MS" | "SECS" => "1".to_string(),
            "ADDR" => "127.0.0.1:7070".to_string(),
            w => w.replace("offset:N", "offset:1"),
        })
        .collect()
}

#[test]
fn every_documented_weir_command_parses() {
    let commands = documented_commands();
    assert!(commands.len() >= 15, "found only {commands:?}");
    let mut failures = Vec::new();
    for (file, command) in commands {
        if let Err(e) = Cli::try_parse_from(argv(&command)) {
            failures.push(format!("{file}: `{command}`: {}", e.kind()));
        }
    }
    assert!(
        failures.is_empty(),
        "documented commands that do not parse:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        "serve", "publish", "tail", "deploy", "handlers", "rollback", "pause", "resume", "rewind",
        "dlq", "status", "cluster", "new", "build", "run",
    ] {
        let err = Cli::try_parse_from(["weir", sub, "--help"]).unwrap_err();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::DisplayHelp,
            "weir {sub} --help"
        );
        assert!(
            err.to_string().contains("Usage: weir"),
            "weir {sub} --help: {err}"
        );
    }
}
