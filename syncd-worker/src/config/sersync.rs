//! Reading sersync 2.5's own `confxml.xml`, as it is, into a [`FileSpec`]: each
//! `<localpath>` becomes one sync, each `<remote>` one target, and the shared `<filter>`,
//! `<inotify>`, `<rsync>`, `<failLog>`, `<crontab>` and command plugin settings apply to
//! all of them. What syncd cannot honour (the socket and refreshCDN plugins) is an error;
//! what has no meaning here (`<host>`, `<debug>`, `<fileSystem>`, the fail log's script
//! path) is a warning. Unlike sersync, nothing is skipped silently (dot-files and `~`
//! files sync). Pure: no I/O; `spec::build` checks the values.

use std::time::Duration;

use roxmltree::{Document, Node};

use super::diag::{At, Diags, Pos};
use super::glob::glob_to_regex;
use super::model::EventSet;
use super::spec::{
    self, CommandSpec, FileSpec, Format, SyncSpec, TargetSpec, MAX_DURATION, MAX_FULL_INTERVAL,
};

/// Decode a confxml.xml: UTF-8 when it is, else Latin-1 (sersync's stock file declares
/// ISO-8859-1). A byte-order mark is dropped.
pub(super) fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Parse `text`; problems go to `d`. None when the file is not a sersync config at all.
pub(super) fn read(text: &str, d: &mut Diags) -> Option<FileSpec> {
    let doc = match Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let p = e.pos();
            d.error_with(
                Pos {
                    line: p.row as usize,
                    col: p.col as usize,
                },
                // roxmltree quotes the character it found, a line break too: escaped,
                // so that the problem stays one `FILE:LINE:COL` line.
                format!("not well-formed XML: {}", one_line(&e.to_string())),
                &["sersync's confxml.xml must be well-formed XML: every element closed, every attribute quoted"],
            );
            return None;
        }
    };
    let x = Xml { doc: &doc };
    let root = doc.root_element();
    if root.tag_name().name() != "head" {
        d.error_with(
            x.pos(root),
            format!("the root element is <{}>", root.tag_name().name()),
            &["a sersync config starts with <head version=\"2.5\">"],
        );
        return None;
    }
    match root.attribute("version") {
        Some(v) if v.starts_with("2.") => {}
        Some(v) => d.warn(
            x.pos(root),
            format!("written for sersync {v}; read as a sersync 2.5 config"),
        ),
        None => {}
    }
    let mut g = Globals::default();
    for node in x.children(root) {
        match node.tag_name().name() {
            "host" => d.warn(x.pos(node), "<host> has no meaning for syncd (it addressed sersync's socket/http service); ignored"),
            "debug" => d.warn(x.pos(node), "<debug> has no meaning for syncd (it logs through its own logger); ignored"),
            "fileSystem" => d.warn(x.pos(node), "<fileSystem> has no meaning for syncd (every filesystem is watched alike); ignored"),
            "filter" => {
                let on = x.flag(node, "start", d);
                let exprs = x.expressions(node, "exclude", d);
                if on {
                    g.exclude = exprs;
                }
            }
            "inotify" => x.inotify(node, &mut g, d),
            "sersync" => {
                g.sersync_at = Some(x.pos(node));
                x.sersync(node, &mut g, d);
            }
            "plugin" => x.plugin_definition(node, &mut g, d),
            other => x.unknown(node, other, "<head>", "host, debug, fileSystem, filter, inotify, sersync, plugin", d),
        }
    }
    if g.sersync_at.is_none() {
        d.error_with(
            x.pos(root),
            "there is no <sersync> element",
            &["add <sersync> with a <localpath watch=\"/dir\"> holding one <remote ip=... name=...> per target"],
        );
        return None;
    }
    Some(g.into_spec(&x, d))
}

/// `text` with control characters (line breaks, tabs, NUL) written as escapes.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Settings that apply to every `<localpath>`.
#[derive(Default)]
struct Globals<'a, 'input> {
    sersync_at: Option<Pos>,
    exclude: Vec<At<String>>,
    events: Option<(EventSet, Pos)>,
    localpaths: Vec<Node<'a, 'input>>,
    params: Option<Vec<At<String>>>,
    /// `<auth start="true">`: (user, password file).
    auth: Option<(At<String>, At<String>)>,
    port: Option<At<i64>>,
    timeout: Option<Duration>,
    ssh: bool,
    retry_max: Option<At<Duration>>,
    full_interval: Option<Duration>,
    full_exclude: Option<Vec<At<String>>>,
    /// `<plugin start="true" name=...>` inside `<sersync>`.
    plugin: Option<At<String>>,
    /// The top-level `<plugin name="command">` definition.
    command: Option<CommandSpec>,
}

impl Globals<'_, '_> {
    fn into_spec(self, x: &Xml, d: &mut Diags) -> FileSpec {
        let command = match &self.plugin {
            Some(p) if p.value == "command" => match &self.command {
                Some(c) => Some(c.clone()),
                None => {
                    d.error_with(
                        p.at,
                        "the command plugin is started but there is no <plugin name=\"command\"> with a non-empty <param prefix=...>",
                        &["add it at the top level, or set start=\"false\""],
                    );
                    None
                }
            },
            Some(p) if p.value == "socket" || p.value == "refreshCDN" => {
                d.error_with(
                    p.at,
                    format!("sersync's {} plugin cannot be honoured by syncd", p.value),
                    &["set start=\"false\"; to tell another service what was pushed, use [sync.hooks.http] \
                       (a JSON POST of the pushed paths) in a syncd.toml, or the command plugin"],
                );
                None
            }
            Some(p) => {
                d.error_with(
                    p.at,
                    format!("unknown plugin {:?}", p.value),
                    &["sersync's plugins are command, socket and refreshCDN; syncd runs only command"],
                );
                None
            }
            None => None,
        };
        let syncs = self
            .localpaths
            .iter()
            .map(|&lp| {
                let at = x.pos(lp);
                let mut s = SyncSpec::new(Format::Sersync, at);
                s.source = x.attr(lp, "watch", d);
                s.exclude.clone_from(&self.exclude);
                if let Some((events, at)) = self.events {
                    s.events = events;
                    s.events_at = at;
                }
                if let Some(p) = &self.params {
                    s.params.clone_from(p);
                }
                if self.timeout.is_some() {
                    s.rsync_timeout = self.timeout.filter(|t| !t.is_zero());
                }
                if let Some(r) = &self.retry_max {
                    s.retry_max = r.clone();
                }
                s.full_interval = self.full_interval;
                s.full_exclude.clone_from(&self.full_exclude);
                s.command_hook.clone_from(&command);
                s.targets = x
                    .children(lp)
                    .filter_map(|r| match r.tag_name().name() {
                        "remote" => self.target(x, r, d),
                        other => {
                            x.unknown(r, other, "<localpath>", "remote", d);
                            None
                        }
                    })
                    .collect();
                s
            })
            .collect();
        FileSpec {
            state_dir: None,
            status_file: None,
            metrics_file: None,
            syncs,
            syncs_at: self.sersync_at.unwrap_or(Pos::START),
            daemon: Default::default(),
        }
    }

    /// `<remote ip=... name=...>`: a daemon module, or a remote path with `<ssh start="true">`.
    fn target(&self, x: &Xml, r: Node, d: &mut Diags) -> Option<TargetSpec> {
        let ip = x.attr(r, "ip", d)?;
        let name = x.attr(r, "name", d)?;
        if ip.value.contains('@') {
            // Not repeated: `ip="user:password@host"` holds a secret.
            d.error_with(
                ip.at,
                "ip= holds a user name or password (before '@'); it is the host only",
                &["sersync names the user in <auth users=...>", PASSWORD_HINT],
            );
            return None;
        }
        let host = if ip.value.contains(':') {
            format!("[{}]", ip.value)
        } else {
            ip.value.clone()
        };
        let (dest, password_file) = if self.ssh {
            (format!("{host}:{}", name.value), None)
        } else {
            match &self.auth {
                Some((user, pw)) => (
                    format!("{}@{host}::{}", user.value, name.value),
                    Some(pw.clone()),
                ),
                None => (format!("{host}::{}", name.value), None),
            }
        };
        Some(TargetSpec {
            at: x.pos(r),
            dest: Some(At::new(dest, ip.at)),
            password_file,
            port: self.port.clone(),
            name: None,
            ssh_args: None,
        })
    }
}

struct Xml<'a, 'input> {
    doc: &'a Document<'input>,
}

impl<'a, 'input> Xml<'a, 'input> {
    fn pos(&self, node: Node) -> Pos {
        let p = self.doc.text_pos_at(node.range().start);
        Pos {
            line: p.row as usize,
            col: p.col as usize,
        }
    }

    fn children(&self, node: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
        node.children().filter(|n| n.is_element())
    }

    fn unknown(&self, node: Node, name: &str, parent: &str, expected: &str, d: &mut Diags) {
        let hint = format!("expected in {parent}: {expected}");
        d.error_with(
            self.pos(node),
            format!("unknown element <{name}> in {parent}"),
            &[&hint],
        );
    }

    /// A required attribute, positioned at its value.
    fn attr(&self, node: Node, name: &str, d: &mut Diags) -> Option<At<String>> {
        match node.attribute_node(name) {
            Some(a) => {
                let p = self.doc.text_pos_at(a.range_value().start);
                Some(At::new(
                    a.value().to_string(),
                    Pos {
                        line: p.row as usize,
                        col: p.col as usize,
                    },
                ))
            }
            None => {
                d.error(
                    self.pos(node),
                    format!(
                        "<{}> needs a {name}=\"...\" attribute",
                        node.tag_name().name()
                    ),
                );
                None
            }
        }
    }

    /// `start="true|false"` and the like; missing means false, as in sersync.
    fn flag(&self, node: Node, name: &str, d: &mut Diags) -> bool {
        let Some(v) = node.attribute(name) else {
            return false;
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                let at = self.attr(node, name, d).map_or(self.pos(node), |a| a.at);
                d.error(at, format!("{name}={v:?}: expected \"true\" or \"false\""));
                false
            }
        }
    }

    /// A whole number attribute, at least `min`.
    fn number(&self, node: Node, name: &str, min: i64, d: &mut Diags) -> Option<At<i64>> {
        let a = self.attr(node, name, d)?;
        match a.value.trim().parse::<i64>() {
            Ok(n) if n >= min => Some(At::new(n, a.at)),
            _ => {
                d.error(
                    a.at,
                    format!(
                        "{name}={:?}: expected a whole number of at least {min}",
                        a.value
                    ),
                );
                None
            }
        }
    }

    /// A whole number of `unit`s (at least 1 for minutes, 0 for seconds, as sersync
    /// reads them), at most `max`: an error at the attribute otherwise.
    fn duration(
        &self,
        node: Node,
        name: &str,
        unit: Duration,
        max: Duration,
        d: &mut Diags,
    ) -> Option<At<Duration>> {
        let min = i64::from(unit == MINUTE);
        let n = self.number(node, name, min, d)?;
        let most = max.as_secs() / unit.as_secs();
        let unit_name = if unit == MINUTE { "minutes" } else { "seconds" };
        if n.value.unsigned_abs() > most {
            d.error(
                n.at,
                format!(
                    "{name}=\"{}\": at most {most} {unit_name} ({})",
                    n.value,
                    humantime::format_duration(max)
                ),
            );
            return None;
        }
        Some(At::new(unit * u32::try_from(n.value).ok()?, n.at))
    }

    /// `<TAG expression="..."/>` children of `node`.
    fn expressions(&self, node: Node, tag: &str, d: &mut Diags) -> Vec<At<String>> {
        let mut out = Vec::new();
        for n in self.children(node) {
            if n.tag_name().name() == tag {
                out.extend(self.attr(n, "expression", d));
            } else {
                let parent = format!("<{}>", node.tag_name().name());
                self.unknown(n, n.tag_name().name(), &parent, tag, d);
            }
        }
        out
    }

    fn inotify(&self, node: Node, g: &mut Globals, d: &mut Diags) {
        let mut ev = EventSet::default();
        for n in self.children(node) {
            let name = n.tag_name().name();
            let slot = match name {
                "delete" => &mut ev.delete,
                "createFolder" => &mut ev.create_folder,
                "createFile" => &mut ev.create_file,
                "closeWrite" => &mut ev.close_write,
                "moveFrom" => &mut ev.move_from,
                "moveTo" => &mut ev.move_to,
                "attrib" => &mut ev.attrib,
                "modify" => &mut ev.modify,
                other => {
                    self.unknown(
                        n,
                        other,
                        "<inotify>",
                        "delete, createFolder, createFile, closeWrite, moveFrom, moveTo, attrib, modify",
                        d,
                    );
                    continue;
                }
            };
            *slot = self.flag(n, "start", d);
        }
        g.events = Some((ev, self.pos(node)));
    }

    fn sersync(&self, node: Node<'a, 'input>, g: &mut Globals<'a, 'input>, d: &mut Diags) {
        for n in self.children(node) {
            match n.tag_name().name() {
                "localpath" => g.localpaths.push(n),
                "rsync" => self.rsync(n, g, d),
                "failLog" => {
                    if let Some(m) = self.duration(n, "timeToExecute", MINUTE, MAX_DURATION, d) {
                        g.retry_max = Some(m);
                    }
                    let path = n.attribute("path").unwrap_or("");
                    d.warn(
                        self.pos(n),
                        format!(
                            "<failLog path={path:?}> is not used: syncd keeps failed paths as data under \
                             state_dir (never as a script) and retries them at least every \
                             timeToExecute minutes"
                        ),
                    );
                }
                "crontab" => {
                    let on = self.flag(n, "start", d);
                    let schedule = self.duration(n, "schedule", MINUTE, MAX_FULL_INTERVAL, d);
                    for f in self.children(n) {
                        if f.tag_name().name() != "crontabfilter" {
                            self.unknown(f, f.tag_name().name(), "<crontab>", "crontabfilter", d);
                            continue;
                        }
                        let filter_on = self.flag(f, "start", d);
                        let globs = self.expressions(f, "exclude", d);
                        if on && filter_on {
                            g.full_exclude = Some(
                                globs
                                    .into_iter()
                                    .map(|e| At::new(glob_to_regex(&e.value), e.at))
                                    .collect(),
                            );
                        }
                    }
                    if on {
                        g.full_interval = schedule.map(|m| m.value);
                    }
                }
                "plugin" => {
                    if self.flag(n, "start", d) {
                        g.plugin = self.attr(n, "name", d);
                    }
                }
                other => self.unknown(
                    n,
                    other,
                    "<sersync>",
                    "localpath, rsync, failLog, crontab, plugin",
                    d,
                ),
            }
        }
    }

    fn rsync(&self, node: Node, g: &mut Globals, d: &mut Diags) {
        for n in self.children(node) {
            match n.tag_name().name() {
                "commonParams" => {
                    if let Some(p) = self.attr(n, "params", d) {
                        g.params = Some(
                            p.value
                                .split_whitespace()
                                .map(|w| At::new(w.to_string(), p.at))
                                .collect(),
                        );
                    }
                }
                "auth" => {
                    if self.flag(n, "start", d) {
                        let user = self.attr(n, "users", d);
                        let pw = self.attr(n, "passwordfile", d);
                        if let (Some(user), Some(pw)) = (user, pw) {
                            if user.value.contains(':') {
                                // Not repeated: `users="name:password"` holds a secret.
                                d.error_with(
                                    user.at,
                                    "users= holds a password (name:password)",
                                    &[PASSWORD_HINT],
                                );
                            } else if user.value.trim().is_empty()
                                || user.value.contains([',', ' '])
                            {
                                d.error(
                                    user.at,
                                    format!("users={:?}: expected one user name", user.value),
                                );
                            }
                            g.auth = Some((user, pw));
                        }
                    }
                }
                "userDefinedPort" => {
                    if self.flag(n, "start", d) {
                        g.port = self.number(n, "port", 1, d);
                    }
                }
                "timeout" => {
                    if self.flag(n, "start", d) {
                        g.timeout = self
                            .duration(n, "time", Duration::from_secs(1), MAX_DURATION, d)
                            .map(|t| t.value);
                    }
                }
                "ssh" => g.ssh = self.flag(n, "start", d),
                other => self.unknown(
                    n,
                    other,
                    "<rsync>",
                    "commonParams, auth, userDefinedPort, timeout, ssh",
                    d,
                ),
            }
        }
        if g.ssh {
            if let Some((user, _)) = g.auth.take() {
                d.warn(
                    user.at,
                    "<auth> is not used with <ssh start=\"true\">: ssh logs in with keys",
                );
            }
        }
    }

    /// A top-level `<plugin name=...>` definition.
    fn plugin_definition(&self, node: Node, g: &mut Globals, d: &mut Diags) {
        let Some(name) = self.attr(node, "name", d) else {
            return;
        };
        match name.value.as_str() {
            "command" => {
                let mut argv = None;
                let mut include = None;
                for n in self.children(node) {
                    match n.tag_name().name() {
                        "param" => {
                            let words = |attr: &str| -> Vec<String> {
                                n.attribute(attr)
                                    .unwrap_or("")
                                    .split_whitespace()
                                    .map(String::from)
                                    .collect()
                            };
                            let mut a = words("prefix");
                            if !a.is_empty() {
                                a.push("{}".to_string());
                                a.extend(words("suffix"));
                                argv = Some(a);
                            }
                        }
                        "filter" => {
                            let on = self.flag(n, "start", d);
                            let exprs = self.expressions(n, "include", d);
                            if on {
                                include = Some(exprs);
                            }
                        }
                        other => {
                            self.unknown(n, other, "<plugin name=\"command\">", "param, filter", d)
                        }
                    }
                }
                // Without a <param>, starting the plugin is refused in `into_spec`.
                if let Some(argv) = argv {
                    g.command = Some(CommandSpec {
                        at: self.pos(node),
                        argv,
                        include,
                        timeout: spec::DEFAULT_COMMAND_TIMEOUT,
                    });
                }
            }
            "socket" | "refreshCDN" => {
                // Their settings are never used; starting them is refused where it happens.
                if self.flag(node, "start", d) {
                    g.plugin = Some(name);
                }
            }
            other => d.error_with(
                name.at,
                format!("unknown plugin {other:?}"),
                &["sersync's plugins are command, socket and refreshCDN"],
            ),
        }
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// Where a daemon password goes instead of the config file.
const PASSWORD_HINT: &str =
    "put the password alone on the first line of a file only root can read \
     (e.g. /etc/rsync.password, chmod 600) and name it in \
     <auth start=\"true\" users=\"USER\" passwordfile=\"/etc/rsync.password\"/>";
