//! Settings from the environment and from a TOML config file, beside the command line.
//!
//! Every flag of the node commands (`combined`, `orchestrator`, `transcoder`) is also read from
//! `ZEROHOP_<FLAG>`, the long name in upper snake case (`--service-addr` is
//! `ZEROHOP_SERVICE_ADDR`), and from a config file (`--config FILE` or `ZEROHOP_CONFIG`) whose
//! keys are the long names (`service-addr = ":8935"`; `service_addr` is taken too). The flags of
//! `push`, `transcode` and `bench` that say how to reach and trust a node or which backend to use
//! are read from the environment too ([`CLIENT_ENV`]). Precedence: command line > environment >
//! config file > default.
//!
//! How: the names are added to the clap command built from the derive structs ([`command`]), so
//! a flag added there later gets its environment name and config key without a line here, and
//! `--help` shows `[env: ...]`. clap reads the environment itself. The file's settings become
//! command-line arguments placed before the user's own, for the settings that neither the
//! command line nor the environment gave; clap then parses once more, so conflicts and
//! requirements hold for them as for any flag ([`matches`]). Every value from the file or the
//! environment is first checked with the flag's own value parser, so the file takes exactly what
//! the flag takes, and an error names the setting and where it came from.

use std::ffi::OsString;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use toml::de::{DeTable, DeValue};

/// The commands whose every flag comes from the environment and the config file too.
pub const NODE_COMMANDS: [&str; 3] = ["combined", "orchestrator", "transcoder"];

/// The flags (clap ids) of the other commands that come from the environment too: how to reach
/// and trust a node (`push`), which backend and encoder (`transcode`, `bench`). Their other flags
/// say what one run does and stay on the command line.
pub const CLIENT_ENV: [(&str, &[&str]); 3] = [
    ("push", &["orch", "orch_cert_sha256", "ca_file", "server_name", "insecure_h2c", "token_file"]),
    ("transcode", &["accel", "gpu", "gpu_encode", "nvenc_preset", "filter", "cpu_encoder", "x264_preset"]),
    ("bench", &["accel", "gpus", "gpu_encode", "nvenc_preset", "cpu_encoder", "x264_preset"]),
];

/// The environment variable that names the config file (`--config`).
pub const CONFIG_ENV: &str = "ZEROHOP_CONFIG";
const CONFIG: &str = "config";

/// `ZEROHOP_` and the long flag name in upper snake case.
pub fn env_name(long: &str) -> String {
    format!("ZEROHOP_{}", long.to_uppercase().replace('-', "_"))
}

/// `cmd` with environment names on the flags named above and `--config` on the node commands.
pub fn command(mut cmd: Command) -> Command {
    for name in NODE_COMMANDS {
        cmd = cmd.mut_subcommand(name, |sub| sub.mut_args(with_env).arg(config_arg()));
    }
    for (name, ids) in CLIENT_ENV {
        cmd = cmd.mut_subcommand(name, |sub| {
            sub.mut_args(|a| if ids.contains(&a.get_id().as_str()) { with_env(a) } else { a })
        });
    }
    cmd
}

fn with_env(arg: Arg) -> Arg {
    match arg.get_long().filter(|l| !matches!(*l, "help" | "version")).map(env_name) {
        Some(name) => arg.env(name),
        None => arg,
    }
}

fn config_arg() -> Arg {
    Arg::new(CONFIG)
        .long(CONFIG)
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .action(ArgAction::Set)
        .env(CONFIG_ENV)
        .help_heading(None::<&str>)
        .display_order(0)
        .help(
            "TOML file of settings: keys are this command's long flag names (`max-sessions = 4`), at the top or \
             under [combined], [orchestrator] or [transcoder]. The command line and the environment beat it.",
        )
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An environment variable.
    Env(String),
    /// A key of the config file, on a line (from 1).
    Key { file: PathBuf, line: usize, key: String },
    /// The config file as a whole (unreadable, not TOML).
    File(PathBuf),
}

/// A setting that cannot be taken: where it came from and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Env(name) => write!(f, "environment {name}: {}", self.message),
            Origin::Key { file, line, key } => {
                write!(f, "config file {}, line {line}: key {key:?}: {}", file.display(), self.message)
            }
            Origin::File(file) => write!(f, "config file {}: {}", file.display(), self.message),
        }
    }
}

impl std::error::Error for SettingError {}

/// Why the command line could not be taken.
#[derive(Debug)]
pub enum Failure {
    /// A value from the environment or the config file.
    Setting(SettingError),
    /// clap's own error (or help, or version); `from_file` lists the arguments the config file
    /// added, when there were any, since clap's message names them as flags.
    Clap { error: clap::Error, from_file: Vec<String> },
}

/// Parses `argv` against `cmd` (made by [`command`]) with the config file's settings added.
pub fn matches(cmd: Command, argv: Vec<OsString>) -> Result<ArgMatches, Failure> {
    let mut extra = Vec::new();
    // First pass, errors ignored: which command, which config file, which flags the command line
    // or the environment already gave.
    if let Ok(first) = cmd.clone().ignore_errors(true).try_get_matches_from(&argv)
        && let Some((name, given)) = first.subcommand()
    {
        let mut built = cmd.clone();
        built.build();
        let sub = built.find_subcommand(name).expect("the subcommand clap just matched");
        check_env(sub, given).map_err(Failure::Setting)?;
        // Only the node commands have --config.
        let file = if NODE_COMMANDS.contains(&name) { given.get_one::<PathBuf>(CONFIG) } else { None };
        if let Some(file) = file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Failure::Setting(SettingError { origin: Origin::File(file.clone()), message: e.to_string() })
            })?;
            let set_elsewhere =
                |id: &str| matches!(given.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable));
            extra = file_args(&built, name, file, &text, set_elsewhere).map_err(Failure::Setting)?;
        }
    }
    let from_file: Vec<String> = extra.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let argv = if extra.is_empty() {
        argv
    } else {
        // Right after the subcommand's name: the user's own arguments follow, unchanged.
        let at = 2.min(argv.len());
        argv[..at].iter().cloned().chain(extra).chain(argv[at..].iter().cloned()).collect()
    };
    cmd.try_get_matches_from(argv).map_err(|error| Failure::Clap { error, from_file })
}

/// Every flag of `sub` whose value comes from the environment, checked with its own parser
/// (clap would say only which flag; this says which variable).
fn check_env(sub: &Command, given: &ArgMatches) -> Result<(), SettingError> {
    for arg in sub.get_arguments() {
        let Some(name) = arg.get_env() else { continue };
        let Some(raw) = std::env::var_os(name) else { continue };
        if given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let name = name.to_string_lossy().into_owned();
        let origin = Origin::Env(name.clone());
        let raw = raw.to_string_lossy().into_owned();
        let values = match arg.get_value_delimiter() {
            Some(d) => raw.split(d).map(str::to_string).collect(),
            None => vec![raw],
        };
        for v in values {
            check_value(sub, arg, &v, |example| format!("{name}={}", example.trim_matches('"')))
                .map_err(|message| SettingError { origin: origin.clone(), message })?;
        }
    }
    Ok(())
}

/// The config file's settings for command `name` as arguments (`--max-sessions=4`), leaving out
/// those `set_elsewhere` (by clap id). Sections of the other node commands are checked too.
pub fn file_args(
    root: &Command,
    name: &str,
    file: &Path,
    text: &str,
    set_elsewhere: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, SettingError> {
    let doc = DeTable::parse(text).map_err(|e| SettingError {
        origin: Origin::File(file.to_path_buf()),
        message: format!("not TOML: {}", e.to_string().trim_end()),
    })?;
    let line = |span: Range<usize>| text[..span.start.min(text.len())].matches('\n').count() + 1;
    let origin =
        |span: Range<usize>, key: &str| Origin::Key { file: file.to_path_buf(), line: line(span), key: key.into() };
    // The top level, then this command's section over it.
    let mut top = Vec::new();
    let mut own_section = Vec::new();
    for (key, value) in doc.get_ref() {
        let section = key.get_ref().as_ref();
        match value.get_ref() {
            DeValue::Table(table) if NODE_COMMANDS.contains(&section) => {
                let entries = entries_of(table.iter(), &origin)?;
                if section == name {
                    own_section = entries;
                    continue;
                }
                // Another command's section: checked, not used.
                let other = root.find_subcommand(section).expect("a node command");
                for (k, written, v, span) in &entries {
                    setting_args(other, k, v).map_err(|m| SettingError {
                        origin: origin(span.clone(), written),
                        message: not_a_setting(root, section, k, m),
                    })?;
                }
            }
            _ => top.push((key, value)),
        }
    }
    let mut settings = entries_of(top, &origin)?;
    settings.retain(|(k, _, _, _)| !own_section.iter().any(|(o, _, _, _)| o == k));
    settings.extend(own_section);
    let sub = root.find_subcommand(name).expect("a node command");
    let mut args = Vec::new();
    for (key, written, value, span) in settings {
        let (id, flag_args) = setting_args(sub, &key, value).map_err(|m| SettingError {
            origin: origin(span.clone(), &written),
            message: not_a_setting(root, name, &key, m),
        })?;
        if !set_elsewhere(&id) {
            args.extend(flag_args.into_iter().map(OsString::from));
        }
    }
    Ok(args)
}

/// A setting: its name with `-`, as written, its value, where the key is.
type Entry<'a, 'i> = (String, String, &'a DeValue<'i>, Range<usize>);

/// Keys with `_` read as `-`; the same setting twice is an error.
fn entries_of<'a, 'i: 'a>(
    items: impl IntoIterator<Item = (&'a toml::Spanned<toml::de::DeString<'i>>, &'a toml::Spanned<DeValue<'i>>)>,
    origin: &impl Fn(Range<usize>, &str) -> Origin,
) -> Result<Vec<Entry<'a, 'i>>, SettingError> {
    let mut out: Vec<Entry<'a, 'i>> = Vec::new();
    for (key, value) in items {
        let k = key.get_ref().replace('_', "-");
        if let Some((_, first, _, _)) = out.iter().find(|(o, _, _, _)| *o == k) {
            return Err(SettingError {
                origin: origin(key.span(), key.get_ref()),
                message: format!("the same setting as {first:?} (`_` reads as `-`); keep one"),
            });
        }
        out.push((k, key.get_ref().to_string(), value.get_ref(), key.span()));
    }
    Ok(out)
}

/// Marker in a [`setting_args`] error: the key is no flag of the command.
const UNKNOWN: &str = "\0unknown";

/// `key = value` as arguments of `sub` (checked with the flag's parser), with the flag's id.
fn setting_args(sub: &Command, key: &str, value: &DeValue<'_>) -> Result<(String, Vec<String>), String> {
    if key == CONFIG {
        return Err(format!("a config file cannot name another; give --config FILE or {CONFIG_ENV} instead"));
    }
    let arg = sub
        .get_arguments()
        .find(|a| {
            !matches!(key, "help" | "version")
                && (a.get_long() == Some(key) || a.get_all_aliases().is_some_and(|aliases| aliases.contains(&key)))
        })
        .ok_or_else(|| UNKNOWN.to_string())?;
    let id = arg.get_id().to_string();
    // An alias (`monitor` for `metrics-addr`) is given to clap as the flag itself.
    let key = arg.get_long().unwrap_or(key);
    let example = |v: &str| format!("{key} = {v}");
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match value {
            DeValue::Boolean(true) => Ok((id, vec![format!("--{key}")])),
            DeValue::Boolean(false) => Ok((id, Vec::new())),
            other => {
                Err(format!("{} is not a boolean; write {} or {}", kind(other), example("true"), example("false")))
            }
        };
    }
    let many = matches!(arg.get_action(), ArgAction::Append);
    let values = match value {
        DeValue::Array(items) if many => {
            if items.is_empty() {
                return Err("an empty list; leave the key out for the default".into());
            }
            items.iter().map(|i| scalar(i.get_ref())).collect::<Result<Vec<_>, _>>()?
        }
        DeValue::Array(_) => return Err(format!("takes one value, not a list; write {}", example("\"...\""))),
        other => vec![scalar(other)?],
    };
    let mut args = Vec::new();
    for v in values {
        let parts: Vec<&str> = match arg.get_value_delimiter() {
            Some(d) => v.split(d).collect(),
            None => vec![v.as_str()],
        };
        for part in parts {
            check_value(sub, arg, part, example)?;
            args.push(format!("--{key}={part}"));
        }
    }
    Ok((id, args))
}

/// A TOML value as the text a flag takes.
fn scalar(value: &DeValue<'_>) -> Result<String, String> {
    match value {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => {
            i128::from_str_radix(i.as_str(), i.radix()).map(|n| n.to_string()).map_err(|e| format!("integer {i}: {e}"))
        }
        DeValue::Float(f) => Ok(f.as_str().to_string()),
        DeValue::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("{} is not a setting's value; write a string, number, boolean or list", kind(other))),
    }
}

fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// `raw` through the flag's own value parser; the error says what to write, with an example
/// made by `example` from a value (`max-sessions = 4`, `ZEROHOP_MAX_SESSIONS=4`).
fn check_value(sub: &Command, arg: &Arg, raw: &str, example: impl Fn(&str) -> String) -> Result<(), String> {
    // clap runs a value parser only while parsing: one flag alone, with this flag's parser.
    let alone = Arg::new("value").long("value").action(ArgAction::Set).value_parser(arg.get_value_parser().clone());
    let mut value = OsString::from("--value=");
    value.push(raw);
    let Err(e) = Command::new(sub.get_name().to_string()).no_binary_name(true).arg(alone).try_get_matches_from([value])
    else {
        return Ok(());
    };
    if raw.is_empty() {
        return Err("empty; leave it out for the default".into());
    }
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return Err(format!("invalid value {raw:?}; write true or false, e.g. {}", example("true")));
    }
    let source = std::error::Error::source(&e);
    let why = source.map(|s| format!(": {s}")).unwrap_or_default();
    let default = arg.get_default_values().first().map(|d| d.to_string_lossy().into_owned());
    let names: Vec<String> = arg.get_possible_values().iter().map(|p| p.get_name().to_string()).collect();
    let hint = if let Some(first) = names.first() {
        format!("; write one of {}, e.g. {}", names.join(", "), example(&format!("{first:?}")))
    } else if source.is_some_and(|s| s.is::<std::num::ParseIntError>()) {
        let n = default.filter(|d| d.parse::<i128>().is_ok()).unwrap_or_else(|| "4".into());
        format!("; write a whole number, e.g. {}", example(&n))
    } else if source.is_some_and(|s| s.is::<std::num::ParseFloatError>()) {
        let n = default.filter(|d| d.parse::<f64>().is_ok()).unwrap_or_else(|| "2.5".into());
        format!("; write a number, e.g. {}", example(&n))
    } else {
        // The parser's own message says what to write (addresses, fingerprints).
        String::new()
    };
    Err(format!("invalid value {raw:?}{why}{hint}"))
}

/// The message for a key that is no flag of `name`: the nearest one, or the command it belongs to.
fn not_a_setting(root: &Command, name: &str, key: &str, message: String) -> String {
    if message != UNKNOWN {
        return message;
    }
    let longs = |cmd: &str| -> Vec<String> {
        root.find_subcommand(cmd)
            .map(|c| c.get_arguments().filter_map(|a| a.get_long()).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let own: Vec<String> =
        longs(name).into_iter().filter(|l| !matches!(l.as_str(), "help" | "version" | CONFIG)).collect();
    let mut m = format!("not a setting of `zerohop {name}`");
    if let Some(other) = NODE_COMMANDS.iter().find(|c| **c != name && longs(c).iter().any(|l| l == key)) {
        m.push_str(&format!(" but of `zerohop {other}`: put it under [{other}]"));
        return m;
    }
    match own.iter().map(|l| (strsim::levenshtein(key, l), l)).min() {
        Some((d, l)) if d <= 2 + key.len() / 4 => m.push_str(&format!("; did you mean {l:?}?")),
        _ => m.push_str(&format!("; `zerohop {name} --help` lists them")),
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Command {
        let mut cmd = crate::cli_command();
        cmd.build();
        cmd
    }

    fn args(name: &str, text: &str) -> Result<Vec<String>, String> {
        file_args(&root(), name, Path::new("/etc/zerohop.toml"), text, |_| false)
            .map(|a| a.into_iter().map(|a| a.to_string_lossy().into_owned()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn names_are_the_long_flags_in_upper_snake_case() {
        assert_eq!(env_name("service-addr"), "ZEROHOP_SERVICE_ADDR");
        assert_eq!(env_name("x264-preset"), "ZEROHOP_X264_PRESET");
    }

    #[test]
    fn toml_types_map_to_what_the_flag_takes() {
        let got = args(
            "combined",
            "service_addr = \":8935\"\nmax-sessions = 4\ntask-deadline = 2.5\ninsecure-h2c = true\n\
             private-playback = false\ngpus = [0, 1]\naccel = \"cpu\"\nmax-segment-mib = 0x10\n",
        )
        .expect("valid");
        for want in [
            "--service-addr=:8935",
            "--max-sessions=4",
            "--task-deadline=2.5",
            "--insecure-h2c",
            "--gpus=0",
            "--gpus=1",
            "--accel=cpu",
            "--max-segment-mib=16",
        ] {
            assert!(got.contains(&want.to_string()), "{want} in {got:?}");
        }
        assert!(!got.iter().any(|a| a.contains("private-playback")), "false leaves a flag off: {got:?}");
        // A comma-separated string where the flag takes a list; several orchestrators.
        let got =
            args("transcoder", "gpus = \"0,1\"\norch-addr = [\"a.example:1\", \"b.example:2\"]\n").expect("valid");
        assert_eq!(got, ["--gpus=0", "--gpus=1", "--orch-addr=a.example:1", "--orch-addr=b.example:2"]);
        // A flag's alias is a key too.
        assert_eq!(args("combined", "monitor = \":9935\"").expect("valid"), ["--metrics-addr=:9935"]);
    }

    #[test]
    fn a_section_beats_the_top_level_and_other_sections_are_only_checked() {
        let text = "max-sessions = 1\n[combined]\nmax-sessions = 3\n[transcoder]\nmax-sessions = 5\n";
        assert_eq!(args("combined", text).expect("valid"), ["--max-sessions=3"]);
        assert_eq!(args("orchestrator", text).expect("valid"), ["--max-sessions=1"]);
        let e = args("combined", "[transcoder]\nmax-sessions = \"many\"\n").expect_err("checked");
        assert!(e.contains("line 2") && e.contains("\"max-sessions\"") && e.contains("invalid value \"many\""), "{e}");
    }

    #[test]
    fn the_command_line_and_the_environment_beat_the_file() {
        let text = "max-sessions = 4\nprofiles = \"P240p30fps16x9\"\n";
        let got = file_args(&root(), "combined", Path::new("f.toml"), text, |id| id == "max_sessions").expect("valid");
        assert_eq!(got, [OsString::from("--profiles=P240p30fps16x9")]);
    }

    #[test]
    fn a_bad_value_names_the_file_the_line_the_key_and_what_to_write() {
        let e = args("combined", "\n\nmax-sessions = \"four\"\n").expect_err("bad");
        assert_eq!(
            e,
            "config file /etc/zerohop.toml, line 3: key \"max-sessions\": invalid value \"four\": invalid digit found in \
             string; write a whole number, e.g. max-sessions = 4"
        );
        // What each value is refused with (the end of the message, or a part of it).
        for (command, toml, says) in [
            (
                "combined",
                "accel = \"gpu\"",
                "invalid value \"gpu\"; write one of cpu, cuda, auto, e.g. accel = \"cpu\"",
            ),
            ("combined", "task-deadline = \"soon\"", "write a number, e.g. task-deadline = 8"),
            ("combined", "service-addr = \"http://x:1\"", "is a URL; write IP:PORT"),
            (
                "combined",
                "insecure-h2c = \"yes\"",
                "a string is not a boolean; write insecure-h2c = true or insecure-h2c = false",
            ),
            ("combined", "service-addr = [\":1\", \":2\"]", "takes one value, not a list"),
            ("transcoder", "orch-addr = []", "an empty list"),
            ("combined", "data-dir = 1979-05-27", "a date is not a setting's value"),
            ("combined", "config = \"other.toml\"", "cannot name another"),
        ] {
            let e = args(command, toml).expect_err(toml);
            assert!(e.contains(says), "{toml}: {e}");
        }
    }

    #[test]
    fn an_unknown_key_gets_the_nearest_one_or_the_command_it_belongs_to() {
        let e = args("combined", "max-session = 4").expect_err("unknown");
        assert_eq!(
            e,
            "config file /etc/zerohop.toml, line 1: key \"max-session\": not a setting of `zerohop combined`; did you \
             mean \"max-sessions\"?"
        );
        // Refused with a message ending so: the command the key belongs to, or where the keys are
        // listed.
        for (command, toml, ending) in [
            (
                "orchestrator",
                "transcoder-id = \"t1\"",
                "not a setting of `zerohop orchestrator` but of `zerohop transcoder`: put it under [transcoder]",
            ),
            ("combined", "colour = true", "`zerohop combined --help` lists them"),
            (
                "combined",
                "[limits]\nkeepalive = 5\n",
                "key \"limits\": not a setting of `zerohop combined`; `zerohop combined --help` lists them",
            ),
        ] {
            let e = args(command, toml).expect_err(toml);
            assert!(e.ends_with(ending), "{toml}: {e}");
        }
    }

    #[test]
    fn a_setting_twice_or_a_file_that_is_not_toml_is_an_error() {
        let e = args("combined", "max-sessions = 1\nmax_sessions = 2\n").expect_err("twice");
        assert!(e.contains("the same setting as"), "{e}");
        let e = args("combined", "max-sessions = ").expect_err("not TOML");
        assert!(e.starts_with("config file /etc/zerohop.toml: not TOML: TOML parse error at line 1"), "{e}");
    }

    /// Every command goes through the two passes, with or without a config file of its own.
    #[test]
    fn every_command_parses_through_matches() {
        let dir = crate::scratch::ScratchDir::new("config-unit");
        let file = dir.file("node.toml", "[transcoder]\norch-addr = \"a.example:1\"\n");
        let file = file.to_string_lossy().into_owned();
        for argv in [
            &["presets"][..],
            &["probe", "x.ts"],
            &["transcode", "--accel", "cpu"],
            &["push", "a.ts", "--insecure-h2c"],
            &["gpu-info"],
            &["demo"],
            &["bench", "--repeat", "1"],
            &["combined", "--max-sessions", "1"],
            &["orchestrator", "--config", &file],
            &["transcoder", "--config", &file],
        ] {
            let full = std::iter::once("zerohop").chain(argv.iter().copied()).map(OsString::from).collect();
            if let Err(e) = matches(crate::cli_command(), full) {
                panic!("{argv:?}: {e:?}");
            }
        }
    }

    /// deploy/zerohop.example.toml is taken by every node command, so doc/cli.md's example cannot rot.
    #[test]
    fn the_example_file_is_valid_for_every_node_command() {
        let text = include_str!("../deploy/zerohop.example.toml");
        for name in NODE_COMMANDS {
            let got = args(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!got.is_empty(), "{name} takes settings from the example");
        }
    }

    /// Every flag of a node command has its environment name; the other commands' names exist.
    #[test]
    fn every_node_flag_has_an_environment_name() {
        let cli = root();
        for name in NODE_COMMANDS {
            let sub = cli.find_subcommand(name).expect(name);
            for arg in sub.get_arguments().filter(|a| a.get_long() != Some("help")) {
                let long = arg.get_long().unwrap_or_else(|| panic!("{name} {}: a flag", arg.get_id()));
                let want = if long == CONFIG { CONFIG_ENV.to_string() } else { env_name(long) };
                assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(want.as_str()), "{name} --{long}");
            }
        }
        for (name, ids) in CLIENT_ENV {
            let sub = cli.find_subcommand(name).expect(name);
            for id in ids {
                let arg = sub.get_arguments().find(|a| a.get_id() == *id).unwrap_or_else(|| panic!("{name} {id}"));
                assert!(arg.get_env().is_some(), "{name} {id}");
            }
        }
    }
}
