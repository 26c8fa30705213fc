//! prunner script templates.
//!
//! prunner renders each script line with Go `text/template`, so `{{ .name }}` pastes a job
//! variable into shell text. Baton supports only plain references and rewrites them at load time
//! to `"${name?…}"`: the executor passes job variables as environment variables, so a value
//! reaches the shell as data, never as shell syntax, and a variable that was not passed stops the
//! script with a message naming it (as prunner's `missingkey=error` fails the task), e.g.
//! `script.sh: line 2: version: not passed as an argument to this run`. Anything else inside
//! `{{ }}` (functions, pipes, nested fields) is reported by the loader as unsupported.

/// One `{{ … }}` action found in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action<'a> {
    /// `{{ .name }}`: a plain reference.
    Var(&'a str),
    /// Anything else, as written (including the braces); an unclosed `{{` runs to the end.
    Unsupported(&'a str),
}

/// Splits `script` into literal text and actions.
fn scan(script: &str) -> Vec<(&str, Option<Action<'_>>)> {
    let mut out = Vec::new();
    let mut rest = script;
    while let Some(start) = rest.find("{{") {
        let (literal, from_open) = rest.split_at(start);
        match from_open[2..].find("}}") {
            Some(end) => {
                let whole = &from_open[..end + 4];
                let inner = &from_open[2..end + 2];
                let action = match var_name(inner) {
                    Some(name) => Action::Var(name),
                    None => Action::Unsupported(whole),
                };
                out.push((literal, Some(action)));
                rest = &from_open[end + 4..];
            }
            None => {
                out.push((literal, Some(Action::Unsupported(from_open))));
                rest = "";
            }
        }
    }
    if !rest.is_empty() {
        out.push((rest, None));
    }
    out
}

/// `" .name "` → `Some("name")`.
fn var_name(inner: &str) -> Option<&str> {
    let name = inner
        .trim_matches(|c: char| c == ' ' || c == '\t')
        .strip_prefix('.')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    if (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        Some(name)
    } else {
        None
    }
}

/// The template actions of `script` that are not plain `{{ .name }}` references, as written.
pub(crate) fn unsupported_templates(script: &str) -> Vec<&str> {
    scan(script)
        .into_iter()
        .filter_map(|(_, a)| match a {
            Some(Action::Unsupported(t)) => Some(t),
            _ => None,
        })
        .collect()
}

/// Shell quoting in force at a point of a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Follows bash quoting through `text`, starting in `q`: `'…'`, `"…"` and backslash escapes
/// (outside single quotes). Comments and here-documents are not tracked.
fn track(mut q: Quote, text: &str) -> Quote {
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match (q, c) {
            (Quote::Single, '\'') => q = Quote::None,
            (Quote::Single, _) => {}
            (_, '\\') => escaped = true,
            (Quote::None, '\'') => q = Quote::Single,
            (Quote::None, '"') => q = Quote::Double,
            (Quote::Double, '"') => q = Quote::None,
            _ => {}
        }
    }
    q
}

/// What bash (or any POSIX shell) prints after `name: ` when a referenced variable is unset.
/// Plain words only: it is expanded inside `${name?…}`, so no quotes, `$`, `` ` `` or `}`.
pub const UNSET_MESSAGE: &str = "not passed as an argument to this run";

/// Rewrites every `{{ .name }}` / `{{.name}}` in `script` to a quoted expansion of the
/// environment variable `name` that fails when it is unset (`${name?…}`), whatever quoting
/// surrounds it, so the value is never split, globbed or parsed: `"${name?…}"` outside quotes,
/// `${name?…}` inside double quotes, and `'"${name?…}"'` inside single quotes. Other `{{ … }}`
/// actions are left as written (the loader rejects scripts that contain any).
///
/// ```
/// use baton_core::config::rewrite_templates;
/// let m = "not passed as an argument to this run";
/// assert_eq!(rewrite_templates("echo {{ .name }}"), format!("echo \"${{name?{m}}}\""));
/// assert_eq!(rewrite_templates("echo \"v={{ .name }}\""), format!("echo \"v=${{name?{m}}}\""));
/// ```
#[must_use]
pub fn rewrite_templates(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    let mut q = Quote::None;
    for (literal, action) in scan(script) {
        out.push_str(literal);
        q = track(q, literal);
        match action {
            Some(Action::Var(name)) => {
                let expansion = format!("${{{name}?{UNSET_MESSAGE}}}");
                match q {
                    Quote::None => out.push_str(&format!("\"{expansion}\"")),
                    Quote::Double => out.push_str(&expansion),
                    Quote::Single => out.push_str(&format!("'\"{expansion}\"'")),
                }
            }
            Some(Action::Unsupported(text)) => {
                out.push_str(text);
                q = track(q, text);
            }
            None => {}
        }
    }
    out
}

/// The `${:name}` references of a py4CI command, in order, with the text before each; the
/// text after the last one is the final literal (with `None`). An unclosed `${:` is literal.
fn scan_command(command: &str) -> Vec<(&str, Option<&str>)> {
    let mut out = Vec::new();
    let mut rest = command;
    while let Some(start) = rest.find("${:") {
        let after = &rest[start + 3..];
        let Some(end) = after.find('}') else { break };
        out.push((&rest[..start], Some(&after[..end])));
        rest = &after[end + 1..];
    }
    out.push((rest, None));
    out
}

/// The distinct `${:name}` variable names of a py4CI command, in order of first use.
pub(crate) fn command_variable_names(command: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for (_, name) in scan_command(command) {
        if let Some(name) = name
            && !out.contains(&name)
        {
            out.push(name);
        }
    }
    out
}

/// Fills in a py4CI command's `${:name}` references when a job starts. A plain variable is
/// pasted as written (py4CI's meaning: config text becomes shell text). A secret one
/// ([`EnvValue::Secret`]) becomes a quoted expansion of an environment variable
/// `BATON_SECRET_VARIABLE_<n>` that fits the quoting around it (as [`rewrite_templates`]
/// does), so the script never holds the value. Returns the script and, for each such
/// variable, `(environment variable, reference)`. Names without a value stay as written.
///
/// ```
/// use std::collections::BTreeMap;
/// use baton_core::config::{render_command, EnvValue};
/// let vars = BTreeMap::from([
///     ("host".to_owned(), EnvValue::Plain("example.com".into())),
///     ("token".to_owned(), EnvValue::Secret { secret: "variables.token".into() }),
/// ]);
/// let (script, env) = render_command("curl -H 'T: ${:token}' ${:host}", &vars);
/// assert_eq!(script, "curl -H 'T: '\"${BATON_SECRET_VARIABLE_1}\"'' example.com");
/// assert_eq!(env, vec![("BATON_SECRET_VARIABLE_1".to_owned(), "variables.token".to_owned())]);
/// ```
#[must_use]
pub fn render_command(
    command: &str,
    variables: &std::collections::BTreeMap<String, super::EnvValue>,
) -> (String, Vec<(String, String)>) {
    let mut out = String::with_capacity(command.len());
    let mut env: Vec<(String, String)> = Vec::new();
    let mut q = Quote::None;
    for (literal, name) in scan_command(command) {
        out.push_str(literal);
        q = track(q, literal);
        let Some(name) = name else { continue };
        match variables.get(name) {
            Some(super::EnvValue::Plain(value)) => {
                out.push_str(value);
                q = track(q, value);
            }
            Some(super::EnvValue::Secret { secret }) => {
                let var = match env.iter().find(|(_, r)| r == secret) {
                    Some((v, _)) => v.clone(),
                    None => {
                        let v = format!("BATON_SECRET_VARIABLE_{}", env.len() + 1);
                        env.push((v.clone(), secret.clone()));
                        v
                    }
                };
                match q {
                    Quote::None => out.push_str(&format!("\"${{{var}}}\"")),
                    Quote::Double => out.push_str(&format!("${{{var}}}")),
                    Quote::Single => out.push_str(&format!("'\"${{{var}}}\"'")),
                }
            }
            None => out.push_str(&format!("${{:{name}}}")),
        }
    }
    (out, env)
}

/// The distinct variable names referenced as `{{ .name }}` in `script`, in order of first use.
#[must_use]
pub fn template_vars(script: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, action) in scan(script) {
        if let Some(Action::Var(name)) = action
            && !out.iter().any(|n| n == name)
        {
            out.push(name.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The expansion a reference to `name` becomes (without the quotes around it).
    fn e(name: &str) -> String {
        format!("${{{name}?{UNSET_MESSAGE}}}")
    }

    /// `text` with `$v` standing for the expansion of `v`.
    fn with_v(text: &str) -> String {
        text.replace("$v", &e("v"))
    }

    #[test]
    fn rewrites_references() {
        assert_eq!(
            rewrite_templates("echo {{ .name }}"),
            format!("echo \"{}\"", e("name"))
        );
        assert_eq!(
            rewrite_templates("echo {{.name}}!"),
            format!("echo \"{}\"!", e("name"))
        );
        assert_eq!(
            rewrite_templates("a={{ .a_1 }} b={{.B}}"),
            format!("a=\"{}\" b=\"{}\"", e("a_1"), e("B"))
        );
        assert_eq!(rewrite_templates("no templates"), "no templates");
        assert_eq!(rewrite_templates(""), "");
    }

    #[test]
    fn quoting_context_is_respected() {
        assert_eq!(
            rewrite_templates("echo \"a {{ .v }} b\" {{ .v }}"),
            with_v("echo \"a $v b\" \"$v\"")
        );
        assert_eq!(
            rewrite_templates("echo 'x {{ .v }}' \\\"{{ .v }}"),
            with_v("echo 'x '\"$v\"'' \\\"\"$v\"")
        );
        assert_eq!(
            rewrite_templates("echo \"it's {{.v}}\"; echo '\"' {{.v}}"),
            with_v("echo \"it's $v\"; echo '\"' \"$v\"")
        );
    }

    #[test]
    fn leaves_other_actions() {
        let s = "x {{ .a | printf \"%q\" }} {{ .b.c }} {{ len .x }} {{ .1a }} {{ .n }} {{ open";
        assert_eq!(
            rewrite_templates(s),
            format!(
                "x {{{{ .a | printf \"%q\" }}}} {{{{ .b.c }}}} {{{{ len .x }}}} {{{{ .1a }}}} \"{}\" {{{{ open",
                e("n")
            )
        );
        assert_eq!(
            unsupported_templates(s),
            vec![
                "{{ .a | printf \"%q\" }}",
                "{{ .b.c }}",
                "{{ len .x }}",
                "{{ .1a }}",
                "{{ open"
            ]
        );
    }

    #[test]
    fn lists_vars() {
        assert_eq!(
            template_vars("{{ .b }} {{.a}} {{ .b }} {{ f }}"),
            vec!["b".to_owned(), "a".to_owned()]
        );
    }

    /// Runs `script` as the supervisor does (`bash -eo pipefail`), with `env` only.
    fn bash(script: &str, env: &[(&str, &str)]) -> std::process::Output {
        std::process::Command::new("bash")
            .args(["-eo", "pipefail", "-c", script])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env.iter().copied())
            .output()
            .expect("bash runs")
    }

    /// The rewrite under a real bash: a value is printed as data in every quoting context, and
    /// a variable that was not passed stops the script with a message naming it.
    #[test]
    fn rewritten_references_run_under_bash() {
        let value = "a  b $(echo pwned) `id` ' \" * \\ ${HOME}";
        let script =
            rewrite_templates("printf '%s|' {{ .v }} \"{{ .v }}\" 'x{{ .v }}y'\nprintf 'end'");
        let out = bash(&script, &[("v", value)]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{value}|{value}|x{value}y|end")
        );
        // An empty value is a value (Go templates print it as empty too).
        let out = bash(&script, &[("v", "")]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "||xy|end");

        for template in [
            "echo {{ .does_not_exist }}",
            "echo \"x {{ .does_not_exist }}\" || true",
            "echo 'x {{.does_not_exist}}'",
            "y=$(echo {{ .does_not_exist }})",
        ] {
            let script = format!("{}\necho after", rewrite_templates(template));
            let out = bash(&script, &[]);
            assert!(!out.status.success(), "{template}: {out:?}");
            assert!(
                !String::from_utf8_lossy(&out.stdout).contains("after"),
                "{template}: the script went on: {out:?}"
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("does_not_exist: not passed as an argument to this run"),
                "{template}: {stderr}"
            );
        }
    }

    proptest! {
        #[test]
        fn text_without_braces_is_unchanged(s in "[^{}]{0,40}") {
            prop_assert_eq!(rewrite_templates(&s), s.clone());
            prop_assert!(template_vars(&s).is_empty());
        }

        #[test]
        fn references_become_env_vars(name in "[A-Za-z_][A-Za-z0-9_]{0,10}", sp in " {0,2}") {
            let script = format!("echo {{{{{sp}.{name}{sp}}}}}");
            prop_assert_eq!(rewrite_templates(&script), format!("echo \"{}\"", e(&name)));
            prop_assert_eq!(template_vars(&script), vec![name]);
        }
    }
}
