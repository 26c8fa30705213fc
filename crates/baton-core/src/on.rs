//! The `on:` filter of a task or pipeline: which repository events start it, and why an event
//! does not.
//!
//! ```yaml
//! on:
//!   push: {branches: [main, "release/**"], tags: ["v*"], paths: ["src/**"], paths_ignore: ["**.md"]}
//!   pull_request: {branches: [main], types: [opened, synchronize, reopened]}
//!   schedule: ["0 3 * * *"]
//!   manual: true
//!   repo: [backend]          # server-defined tasks only: the `repos:` it listens to
//! ```
//!
//! `on: push` and `on: [push, pull_request]` are short for those events with no filter (every
//! branch and tag), and an empty key (`push:`) means the same. Without any `on:`
//! ([`On::default`]) a task runs on pushes to any branch (`push: {branches: ["**"]}`, so not on
//! tags) and on pull requests opened, synchronized or reopened. Hand triggers are allowed
//! unless `manual: false`.
//!
//! Pushes follow GitHub Actions' rules: with `branches` but no `tags` a tag push starts nothing
//! (and the reverse); `paths`/`paths_ignore` are checked for branch pushes only; a deletion
//! starts nothing. A list of patterns is read in order and the last pattern that matches a
//! name decides: `!pattern` excludes, a later positive pattern includes again.
//!
//! Patterns are GitHub Actions globs: `*` matches any characters except `/`, `**` any characters
//! including `/` (as a whole path segment it matches zero or more segments: `**/README.md`
//! matches `README.md`), `[abc]` a set, `\` escapes. Unlike GitHub, `?` matches one character
//! other than `/` and `+` is literal, as in every other glob.
//!
//! Everything here is pure: [`matches`] gets the facts of an event (the wiring reads them from
//! the webhook and the mirror) and answers yes, or no with a sentence a user can act on.

use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use serde::de::{self, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// Which events start a task or pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct On {
    /// Server-defined tasks: names of the `repos:` whose events may start it. Empty: any.
    pub repo: Vec<String>,
    /// `None`: pushes start nothing.
    pub push: Option<PushFilter>,
    /// `None`: pull requests start nothing.
    pub pull_request: Option<PullRequestFilter>,
    /// Cron expressions (checked where the configuration is built).
    pub schedule: Vec<String>,
    /// Whether a user may start it by hand.
    pub manual: bool,
}

impl Default for On {
    /// What a task without `on:` listens to: pushes to any branch (not tags), pull requests
    /// opened, synchronized or reopened, and hand triggers.
    fn default() -> Self {
        On {
            repo: Vec::new(),
            push: Some(PushFilter {
                branches: Some(Patterns::new(&["**"]).expect("a valid pattern")),
                ..PushFilter::default()
            }),
            pull_request: Some(PullRequestFilter::default()),
            schedule: Vec::new(),
            manual: true,
        }
    }
}

/// `on: push:` — `None` fields filter nothing.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushFilter {
    #[serde(default)]
    pub branches: Option<Patterns>,
    #[serde(default)]
    pub tags: Option<Patterns>,
    #[serde(default)]
    pub paths: Option<Patterns>,
    #[serde(default)]
    pub paths_ignore: Option<Patterns>,
}

/// `on: pull_request:` — target branches and the actions that start a run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequestFilter {
    /// Patterns for the target (base) branch.
    #[serde(default)]
    pub branches: Option<Patterns>,
    #[serde(default = "default_types", deserialize_with = "one_or_many")]
    pub types: Vec<PrType>,
}

impl Default for PullRequestFilter {
    fn default() -> Self {
        PullRequestFilter {
            branches: None,
            types: default_types(),
        }
    }
}

fn default_types() -> Vec<PrType> {
    vec![PrType::Opened, PrType::Synchronize, PrType::Reopened]
}

/// A pull request action a filter can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrType {
    Opened,
    Synchronize,
    Reopened,
    Closed,
}

impl PrType {
    pub fn as_str(self) -> &'static str {
        match self {
            PrType::Opened => "opened",
            PrType::Synchronize => "synchronize",
            PrType::Reopened => "reopened",
            PrType::Closed => "closed",
        }
    }
}

/// What happened, as far as `on:` cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFacts {
    /// The name (in `repos:`) of the repository the event came from, if any.
    pub repo: Option<String>,
    pub event: EventFact,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFact {
    Push {
        target: PushTarget,
        /// The push deleted the branch or tag.
        deleted: bool,
        /// Paths the push changed; `None` when unknown (path filters then let it through).
        changed_paths: Option<Vec<String>>,
    },
    PullRequest {
        /// The normalized action: `opened`, `synchronize`, `reopened`, `closed` or another word.
        action: String,
        /// The branch the pull request targets.
        target_branch: String,
    },
    /// A schedule slot of this cron expression came due.
    Schedule { cron: String },
    /// A user asked for a run.
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushTarget {
    Branch(String),
    Tag(String),
}

/// Why an event does not start a task: one sentence, for the delivery's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoMatch(pub String);

/// Whether `facts` start a task whose filter is `on`.
pub fn matches(on: &On, facts: &EventFacts) -> Result<(), NoMatch> {
    if !on.repo.is_empty() {
        match &facts.repo {
            Some(r) if on.repo.iter().any(|x| x == r) => {}
            Some(r) => return no(format!("repo {r} is not in on.repo {}", list(&on.repo))),
            None => {
                return no(format!(
                    "the event has no repo and on.repo is {}",
                    list(&on.repo)
                ));
            }
        }
    }
    match &facts.event {
        EventFact::Push {
            target,
            deleted,
            changed_paths,
        } => {
            let Some(push) = &on.push else {
                return no("pushes do not start this task (its on: has no push)");
            };
            match_push(push, target, *deleted, changed_paths.as_deref())
        }
        EventFact::PullRequest {
            action,
            target_branch,
        } => {
            let Some(pr) = &on.pull_request else {
                return no("pull requests do not start this task (its on: has no pull_request)");
            };
            if !pr.types.iter().any(|t| t.as_str() == action) {
                let types: Vec<&str> = pr.types.iter().map(|t| t.as_str()).collect();
                return no(format!(
                    "pull request action {action} is not in pull_request.types {}",
                    list(&types)
                ));
            }
            match &pr.branches {
                Some(p) if !p.is_match(target_branch) => no(format!(
                    "target branch {target_branch} does not match pull_request.branches {p}"
                )),
                _ => Ok(()),
            }
        }
        EventFact::Schedule { cron } => {
            if on.schedule.iter().any(|c| c == cron) {
                Ok(())
            } else if on.schedule.is_empty() {
                no("schedules do not start this task (its on: has no schedule)")
            } else {
                no(format!(
                    "schedule {cron:?} is not in on.schedule {}",
                    list(&on.schedule)
                ))
            }
        }
        EventFact::Manual if on.manual => Ok(()),
        EventFact::Manual => no("this task cannot be started by hand (on.manual is false)"),
    }
}

fn match_push(
    push: &PushFilter,
    target: &PushTarget,
    deleted: bool,
    changed: Option<&[String]>,
) -> Result<(), NoMatch> {
    let (kind, name) = match target {
        PushTarget::Branch(b) => ("branch", b),
        PushTarget::Tag(t) => ("tag", t),
    };
    if deleted {
        return no(format!("the push deletes {kind} {name}"));
    }
    let (own, own_key, other_key, other) = match target {
        PushTarget::Branch(_) => (&push.branches, "branches", "tags", &push.tags),
        PushTarget::Tag(_) => (&push.tags, "tags", "branches", &push.branches),
    };
    match (own, other) {
        (None, Some(_)) => {
            return no(format!(
                "{kind} pushes do not start this task: its on.push lists {other_key} but no {own_key}"
            ));
        }
        (Some(p), _) if !p.is_match(name) => {
            return no(format!("{kind} {name} does not match push.{own_key} {p}"));
        }
        _ => {}
    }
    match (target, changed) {
        (PushTarget::Branch(_), Some(paths)) => match_paths(push, paths),
        _ => Ok(()),
    }
}

fn match_paths(push: &PushFilter, paths: &[String]) -> Result<(), NoMatch> {
    let kept: Vec<&String> = match &push.paths_ignore {
        Some(ignore) => paths.iter().filter(|p| !ignore.is_match(p)).collect(),
        None => paths.iter().collect(),
    };
    if let Some(ignore) = &push.paths_ignore
        && kept.is_empty()
        && !paths.is_empty()
    {
        return no(format!(
            "every changed path matches push.paths_ignore {ignore} (changed: {})",
            sample(paths.iter())
        ));
    }
    match &push.paths {
        Some(want) if !kept.iter().any(|p| want.is_match(p)) => no(if paths.is_empty() {
            format!("the push changes no file, so none matches push.paths {want}")
        } else {
            format!(
                "no changed path matches push.paths {want} (changed: {})",
                sample(kept.into_iter())
            )
        }),
        _ => Ok(()),
    }
}

fn no<T>(reason: impl Into<String>) -> Result<T, NoMatch> {
    Err(NoMatch(reason.into()))
}

fn list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("[{}]", items.join(", "))
}

/// At most three paths, then how many more.
fn sample<'a>(paths: impl ExactSizeIterator<Item = &'a String>) -> String {
    let n = paths.len();
    let shown: Vec<&str> = paths.take(3).map(String::as_str).collect();
    match n.saturating_sub(shown.len()) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// An ordered list of GitHub Actions glob patterns, compiled once.
#[derive(Clone)]
pub struct Patterns {
    items: Vec<Pattern>,
}

#[derive(Clone)]
struct Pattern {
    text: String,
    negated: bool,
    set: GlobSet,
}

/// At most this many globs per pattern (each `**` inside a segment doubles them).
const MAX_EXPANSIONS: usize = 64;

impl Patterns {
    /// Compiles `patterns`; the error names the pattern and what is wrong with it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Patterns, String> {
        let mut items = Vec::with_capacity(patterns.len());
        for p in patterns {
            let text = p.as_ref();
            let (negated, glob) = match text.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            if glob.is_empty() {
                return Err(format!("empty pattern {text:?}"));
            }
            let mut set = GlobSetBuilder::new();
            for expanded in expand(glob)? {
                let g = GlobBuilder::new(&expanded)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| format!("invalid pattern {text:?}: {}", e.kind()))?;
                set.add(g);
            }
            let set = set
                .build()
                .map_err(|e| format!("invalid pattern {text:?}: {e}"))?;
            items.push(Pattern {
                text: text.to_owned(),
                negated,
                set,
            });
        }
        if !items.is_empty() && items.iter().all(|p| p.negated) {
            return Err(format!(
                "{} has only `!` patterns, which match nothing (hint: start with \"**\" to mean everything else)",
                list(patterns)
            ));
        }
        Ok(Patterns { items })
    }

    /// Whether `name` is selected: the last pattern that matches decides.
    pub fn is_match(&self, name: &str) -> bool {
        let mut selected = false;
        for p in &self.items {
            if p.set.is_match(name) {
                selected = !p.negated;
            }
        }
        selected
    }

    /// The patterns as written.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|p| p.text.as_str())
    }
}

impl PartialEq for Patterns {
    fn eq(&self, other: &Self) -> bool {
        self.texts().eq(other.texts())
    }
}

impl fmt::Debug for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.texts()).finish()
    }
}

/// `[main, release/**]`, as in messages.
impl fmt::Display for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<&str> = self.texts().collect();
        f.write_str(&list(&texts))
    }
}

/// Rewrites one GitHub Actions glob into globs with globset's meaning of `**`, which only
/// understands `**` as a whole path segment. A `**` touching other characters (`**.js`,
/// `v**`, `a**b`) means "any characters, `/` included" and becomes the alternatives that say
/// so: `**.js` → `**/*.js`; `v**` → `v*` or `v*/**`; `a**b` → `a*b` or `a*/**/*b`.
fn expand(glob: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = glob.chars().collect();
    let mut outs = vec![String::new()];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let escaped: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            outs.iter_mut().for_each(|o| o.push_str(&escaped));
            i += 2;
            continue;
        }
        if c != '*' {
            outs.iter_mut().for_each(|o| o.push(c));
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '*').count();
        if run == 1 {
            outs.iter_mut().for_each(|o| o.push('*'));
            i += 1;
            continue;
        }
        let left_bound = i == 0 || chars[i - 1] == '/';
        let right_bound = chars.get(i + run).is_none_or(|&c| c == '/');
        let options: &[&str] = match (left_bound, right_bound) {
            (true, true) => &["**"],
            (true, false) => &["**/*"],
            (false, true) => &["*", "*/**"],
            (false, false) => &["*", "*/**/*"],
        };
        outs = outs
            .iter()
            .flat_map(|o| options.iter().map(move |opt| format!("{o}{opt}")))
            .collect();
        if outs.len() > MAX_EXPANSIONS {
            return Err(format!(
                "pattern {glob:?} has too many `**` inside path segments"
            ));
        }
        i += run;
    }
    Ok(outs)
}

// ---- Deserialization ----------------------------------------------------------------------

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let texts: Vec<String> = one_or_many(d)?;
        Patterns::new(&texts).map_err(de::Error::custom)
    }
}

/// A list, or one value standing for a list of one.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a value or a list of values")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<T>, E> {
            Ok(vec![T::deserialize(s.into_deserializer())?])
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// The map form of `on:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnMap {
    #[serde(default, deserialize_with = "one_or_many")]
    repo: Vec<String>,
    #[serde(default, deserialize_with = "present_push")]
    push: Option<PushFilter>,
    #[serde(default, deserialize_with = "present_pr")]
    pull_request: Option<PullRequestFilter>,
    #[serde(default, deserialize_with = "one_or_many")]
    schedule: Vec<String>,
    #[serde(default = "yes")]
    manual: bool,
}

fn yes() -> bool {
    true
}

/// `push:` with no value means every push.
fn present_push<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PushFilter>, D::Error> {
    Ok(Some(
        Option::<PushFilter>::deserialize(d)?.unwrap_or_default(),
    ))
}

fn present_pr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PullRequestFilter>, D::Error> {
    Ok(Some(
        Option::<PullRequestFilter>::deserialize(d)?.unwrap_or_default(),
    ))
}

/// The event names the short forms (`on: push`, `on: [push, manual]`) take.
const EVENT_NAMES: &[&str] = &["push", "pull_request", "manual"];

impl On {
    /// `on:` naming events without filters: only those events (and hand triggers).
    fn from_names(names: &[String]) -> Result<On, String> {
        let mut on = On {
            repo: Vec::new(),
            push: None,
            pull_request: None,
            schedule: Vec::new(),
            manual: true,
        };
        for n in names {
            match n.as_str() {
                "push" => on.push = Some(PushFilter::default()),
                "pull_request" => on.pull_request = Some(PullRequestFilter::default()),
                "manual" => on.manual = true,
                other => {
                    return Err(format!(
                        "unknown event {other:?} in on: (expected one of {}; schedules need the map form, `schedule: [CRON]`)",
                        list(EVENT_NAMES)
                    ));
                }
            }
        }
        Ok(on)
    }
}

impl<'de> Deserialize<'de> for On {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = On;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event name, a list of event names, or a map of event filters")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<On, E> {
                On::from_names(&[s.to_owned()]).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<On, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                On::from_names(&names).map_err(de::Error::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<On, A::Error> {
                let m = OnMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(On {
                    repo: m.repo,
                    push: m.push,
                    pull_request: m.pull_request,
                    schedule: m.schedule,
                    manual: m.manual,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_of_globstars_inside_segments() {
        let e = |g: &str| expand(g).unwrap();
        assert_eq!(e("**"), ["**"]);
        assert_eq!(e("a/**/b"), ["a/**/b"]);
        assert_eq!(e("**.js"), ["**/*.js"]);
        assert_eq!(e("docs/**.md"), ["docs/**/*.md"]);
        assert_eq!(e("v**"), ["v*", "v*/**"]);
        assert_eq!(e("a**b"), ["a*b", "a*/**/*b"]);
        assert_eq!(e("a***"), ["a*", "a*/**"]);
        assert_eq!(e(r"a\**"), [r"a\**"]);
        assert_eq!(e("a**b**c").len(), 4);
    }
}
